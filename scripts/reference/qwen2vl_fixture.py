#!/usr/bin/env python3
"""Generates services/models/tests/fixtures/qwen2vl/: a tiny random Qwen2-VL model (an HF model
directory in the original Qwen2-VL checkpoint layout), a tiny ColQwen2 LoRA adapter in PEFT's on-disk
format, test images, and the outputs that HF transformers (image processor, vision tower, M-RoPE,
decoder), a GME-style single-vector head and colpali-engine's ColQwen2 multi-vector head compute with
them. Folio's own Qwen2-VL (Rust, candle) is checked against these files; the (hand-written) README.md
in that directory describes every file, tensor and convention.

What it writes (all deterministic; a second run gives identical bytes):
  tiny-qwen2vl/config.json              Qwen2-VL-2B-Instruct's flat config.json layout (text keys at the
                                        top level, rope_theta, rope_scaling {type: mrope, mrope_section},
                                        vision_config with depth/embed_dim/num_heads/...), shrunk: hidden
                                        64, 2 layers, 4 query / 2 KV heads (head_dim 16), intermediate 96,
                                        mrope_section [2,3,3]; vision depth 2, embed_dim 32, 4 heads,
                                        mlp_ratio 2, merger output 64; untied lm_head.
  tiny-qwen2vl/model.safetensors        float32 weights from a seeded generator, written by hand in the
                                        original checkpoint key layout (model.layers.*, model.embed_tokens,
                                        model.norm, visual.*, lm_head) plus a ColQwen2 head
                                        custom_text_proj.{weight,bias} (Linear(64, 128)) under the key
                                        names of colpali-engine's checkpoints.
  tiny-qwen2vl/tokenizer.json           byte-level BPE trained here on CORPUS with Qwen2's pipeline (NFC,
                                        Split(Qwen2 regex, Isolated) + ByteLevel(no prefix space, no
                                        regex), ByteLevel decoder/post-processor, no unk) and Qwen2-VL's 14
                                        special tokens after the BPE vocabulary in Qwen2-VL's order.
  tiny-qwen2vl/tokenizer_config.json    Qwen2-VL's layout (no chat template).
  tiny-qwen2vl/preprocessor_config.json Qwen2-VL's layout, min_pixels 4*28*28, max_pixels 12*28*28.
  tiny-colqwen2-lora/adapter_config.json, adapter_model.safetensors
                                        a seeded LoRA (r=4, alpha=8) on the modules vidore's ColQwen2
                                        adapters target (every text-decoder linear + custom_text_proj),
                                        keys as in vidore/colqwen2-v1.0 (base_model.model.model.layers...).
  images/*.png                          5 deterministic test images (patterns, stripes, gradients).
  image_processor.safetensors           per image: resized uint8 image, pixel_values, image_grid_thw.
  vision.safetensors                    per image: vision tower stages (patch embed, block 0, last block,
                                        merged embeddings) and its 2-D rotary position ids.
  text.safetensors                      per prompt case: input ids, mask, M-RoPE position ids, hidden states.
  gme.safetensors                       GME-style embeddings (gme_inference.py conventions).
  colqwen2.safetensors                  ColQwen2 multi-vector outputs, base and with the LoRA adapter.
  reference.json                        all metadata: token ids, prompt strings, image sizes, shapes,
                                        conventions with their sources, eager-vs-sdpa differences.

Everything is computed by transformers from the files as it loads them back (AutoTokenizer,
AutoImageProcessor with the PIL backend, Qwen2VLForConditionalGeneration.from_pretrained,
colpali_engine's ColQwen2.from_pretrained), so the fixture also proves those libraries read the files as
meant. Reference attention is "eager"; every forward pass is repeated with "sdpa" to measure the noise
floor (reported in reference.json, "tolerances").

ColQwen2 reference: colpali-engine 0.3.18's ColQwen2 model class and ColQwen2Processor are imported and
used as they are (setup-venv.sh pins it; its metadata asks for torch<2.14 and the venv has 2.15, so the
script also applies the ColQwen2 head itself to Qwen2VLModel's output and checks the results agree). The query prompt is built the way
vidore/colqwen2-v1.0 was trained (colpali-engine <= 0.3.12: "Query: " + query + 10 x <|endoftext|>),
which 0.3.18 no longer does by default (its query_prefix is ""); both strings are recorded.

GME reference: Alibaba-NLP/gme-Qwen2-VL-2B-Instruct's gme_inference.py (the hub itself is unreachable
here; the conventions were read from verbatim copies of that file in public GitHub repositories, see
README.md) is re-implemented here in a few lines: its prompt, right padding, its qwen_vl_utils-style
pre-resize of every image, last-token pooling, L2 normalisation, and its call of the text decoder
without position ids, which under the transformers <= 4.51 it requires means plain sequential positions
for every token (no 3-D M-RoPE for image tokens). The M-RoPE variant is recorded as well.

Run with the venv from scripts/reference/setup-venv.sh (no network needed):
    scripts/reference/.venv/bin/python scripts/reference/qwen2vl_fixture.py
"""

import os

# Never reach for the HF hub: everything is built here or read from the local directory.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from importlib.metadata import version as pkg_version  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import peft  # noqa: E402
import PIL  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers  # noqa: E402
from tokenizers import pre_tokenizers, processors, trainers  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (  # noqa: E402
    Qwen2VLImageProcessorPil,
    smart_resize as hf_smart_resize,
)

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "services" / "models" / "tests" / "fixtures" / "qwen2vl"
MODEL_DIR_NAME = "tiny-qwen2vl"
LORA_DIR_NAME = "tiny-colqwen2-lora"
MODEL_DIR = OUT_DIR / MODEL_DIR_NAME
LORA_DIR = OUT_DIR / LORA_DIR_NAME
IMAGE_DIR = OUT_DIR / "images"
GENERATOR = "scripts/reference/qwen2vl_fixture.py"
SEED = 20240829  # Qwen2-VL's release date

# --- tokenizer ---
# Qwen2's pre-tokenizer regex (single digits, unlike Llama 3's \p{N}{1,3}), as in Qwen2-VL's tokenizer.json.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BPE_VOCAB_SIZE = 420  # 256 byte symbols + 164 merges; the special tokens come on top
# Qwen2-VL's special tokens in its order (ids 151643..151656 there).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, VISION_PAD = "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"

CORPUS = [
    "The library opens at nine in the morning and closes at six in the evening. Readers who arrive "
    "early can wait in the reading room, where the newspapers are laid out on the long oak tables. "
    "The librarian keeps a list of the books that were returned late.",
    "A search engine takes a query and returns the documents that are most relevant to it. First it "
    "retrieves a few hundred candidates with a fast index, then it ranks them again with a slower "
    "model that reads the query and the document together.",
    "Find an image that matches the given text. Find a document page that answers the question. "
    "You are a helpful assistant. Describe the image. What is shown in the picture? Where is the "
    "river? Which page shows the table of results?",
    "The river runs through the old town, past the market square and the stone bridge. In the "
    "summer the children swim near the mill, and in the winter the water freezes along the banks.",
    "Each page of the report has a title, a chart with two axes, a table with numbers in rows and "
    "columns, and a short caption under the figure. The scanned pages are images, not text.",
    "Order 12345 was shipped on 2024-08-29 at 09:41. It weighs 2.5 kg and costs 19.99 dollars. "
    "Query: how heavy is the order? Query: when was it shipped? Query: what does it cost?",
    "Vision language models split an image into small patches, turn each patch into a vector, and "
    "let the text model read those vectors together with the words of the prompt.",
    "We'll see what they've done; I'm sure it's fine, and you're right that we'd know if they'd "
    "failed. The team's work isn't finished, but it'll be ready soon.",
]

# --- model ---
HIDDEN = 64
INTERMEDIATE = 96
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS  # 16 -> 8 rotary frequencies
ROPE_THETA = 1000000.0
MROPE_SECTION = [2, 3, 3]
RMS_EPS = 1e-6
VISION_DEPTH = 2
VISION_EMBED = 32
VISION_HEADS = 4
VISION_MLP_RATIO = 2
PATCH = 14
TEMPORAL_PATCH = 2
MERGE = 2
FACTOR = PATCH * MERGE  # 28
PATCH_DIM = 3 * TEMPORAL_PATCH * PATCH * PATCH  # 1176
COLQWEN_DIM = 128
MIN_PIXELS = 4 * FACTOR * FACTOR  # preprocessor_config.json
MAX_PIXELS = 12 * FACTOR * FACTOR
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # OPENAI_CLIP_MEAN / _STD, as Qwen2-VL's preprocessor
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# Weight init (see init_weights): N(0, std^2) per tensor, norms 1 + N(0, 0.1^2).
WEIGHT_STD = 0.2
PATCH_EMBED_STD = 0.05  # 1176 inputs per output: keeps patch embeddings O(1)
BIAS_STD = 0.1
NORM_STD = 0.1

# --- LoRA (ColQwen2 adapter layout) ---
LORA_R = 4
LORA_ALPHA = 8
LORA_STD = 0.1  # lora_A and lora_B both random (a trained adapter has B != 0)
# vidore's ColQwen2 training configs (colpali scripts/configs/qwen2/train_colqwen2_model.yaml) and the
# adapter_config.json of vidore/colqwen2-v1.0 use this target_modules regex.
COLQWEN2_TARGET_MODULES = (
    "(.*(model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(custom_text_proj).*$)"
)

# --- GME (gme_inference.py) ---
GME_DEFAULT_INSTRUCTION = "You are a helpful assistant."
GME_QUERY_INSTRUCTION = "Find an image that matches the given text."  # the instruction in GME's model card example
GME_FETCH_MIN_PIXELS = 4 * 28 * 28  # qwen_vl_utils MIN_PIXELS, used by gme_inference.fetch_image
GME_FETCH_MAX_PIXELS = 16384 * 28 * 28  # qwen_vl_utils MAX_PIXELS
GME_MAX_RATIO = 200
GME_REAL_MIN_IMAGE_TOKENS, GME_REAL_MAX_IMAGE_TOKENS = 256, 1280  # GmeQwen2VL defaults
GME_MIN_IMAGE_TOKENS, GME_MAX_IMAGE_TOKENS = 8, 16  # shrunk (tokens = 28x28 areas); != preprocessor_config
GME_MAX_LENGTH = 1800

# --- ColQwen2 (colpali-engine) ---
COLQWEN2_QUERY_PREFIX_TRAINED = "Query: "  # colpali-engine <= 0.3.12, used to train vidore/colqwen2-v1.0
COLQWEN2_N_AUGMENTATION = 10

# --- images: name -> (width, height) ---
IMAGES = {
    "normal": (150, 110),  # over max_pixels: floor branch, 110 px -> 2.97 rows of 28 -> 2 (56 x 112)
    "tall": (40, 300),
    "wide": (400, 36),  # over max_pixels: floor branch, 36 px -> 1.04 rows of 28 -> 1 (28 x 308)
    "tiny": (12, 9),  # smaller than 28 px: transformers 5.23 upscales it (4.x raised)
    "odd": (97, 70),  # 70 / 28 = 2.5: Python's round() rounds the tie to even (2 -> 56 px, not 84)
}
RESIZE_ONLY_CASES = [  # (height, width) for the smart_resize table
    (110, 150), (300, 40), (36, 400), (9, 12), (61, 97), (70, 126), (42, 42), (14, 14), (1, 1),
    (28, 28), (56, 56), (13, 27), (27, 13), (2, 300), (1000, 1000), (1120, 1680), (3000, 20),
    (28, 5600), (28, 5628), (98, 98), (126, 126), (154, 210), (1, 199), (1, 201), (84, 84),
]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# JSON output


def to_json(obj, indent=0) -> str:
    """JSON with 2-space indent where lists of scalars stay on one line."""
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {to_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        if all(isinstance(v, (int, float, bool)) or v is None for v in obj):
            return "[" + ", ".join(json.dumps(v) for v in obj) + "]"
        one_line = "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in obj) + "]"
        if all(isinstance(v, str) for v in obj) and len(one_line) <= 100:
            return one_line
        if all(isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v) for v in obj):
            return "[" + ", ".join(to_json(v) for v in obj) + "]" if len(obj) <= 4 else (
                "[\n" + ",\n".join(inner + to_json(v) for v in obj) + "\n" + pad + "]"
            )
        items = [f"{inner}{to_json(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float):
        assert math.isfinite(obj), obj
        return json.dumps(obj)
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: Path, obj, compact=False) -> None:
    text = to_json(obj) if compact else json.dumps(obj, indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def stat(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Max |a - b| and that divided by max |b| (b = the eager reference)."""
    a, b = a.detach().double(), b.detach().double()
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    scale = float(b.abs().max()) if b.numel() else 0.0
    return {"max_abs": float(f"{diff:.3g}"), "max_rel": float(f"{(diff / scale if scale else 0.0):.3g}")}


def merge_stats(stats: list[dict]) -> dict:
    return {
        "max_abs": max(s["max_abs"] for s in stats),
        "max_rel": max(s["max_rel"] for s in stats),
    }


# ----------------------------------------------------------------------------------------------
# Tokenizer


def train_bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE())  # no unk token, no dropout, no byte fallback, as Qwen2's
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok


def build_tokenizer() -> Tokenizer:
    first, second = train_bpe(), train_bpe()
    if first.to_str() != second.to_str():
        raise SystemExit("error: BPE training is not deterministic")
    tok = first
    assert tok.get_vocab_size() == BPE_VOCAB_SIZE, tok.get_vocab_size()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in SPECIAL_TOKENS]
    )
    assert tok.token_to_id(ENDOFTEXT) == BPE_VOCAB_SIZE
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    # As in Qwen2-VL's tokenizer.json; the Python bindings cannot set these (no effect on the ids).
    spec = json.loads(tok.to_str())
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    spec["model"]["continuing_subword_prefix"] = ""
    spec["model"]["end_of_word_suffix"] = ""
    return Tokenizer.from_str(json.dumps(spec))


# ----------------------------------------------------------------------------------------------
# Model directory


def model_config(ids: dict, vocab_size: int) -> dict:
    """Qwen2-VL-2B-Instruct's config.json layout (transformers 4.4x style), shrunk."""
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": ids[ENDOFTEXT],
        "eos_token_id": ids[IM_END],
        "vision_start_token_id": ids[VISION_START],
        "vision_end_token_id": ids[VISION_END],
        "vision_token_id": ids[VISION_PAD],
        "image_token_id": ids[IMAGE_PAD],
        "video_token_id": ids[VIDEO_PAD],
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": 32768,
        "max_window_layers": LAYERS,
        "model_type": "qwen2_vl",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": RMS_EPS,
        "rope_theta": ROPE_THETA,
        "sliding_window": 32768,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": VISION_DEPTH,
            "embed_dim": VISION_EMBED,
            "mlp_ratio": VISION_MLP_RATIO,
            "num_heads": VISION_HEADS,
            "in_chans": 3,
            "hidden_size": HIDDEN,
            "patch_size": PATCH,
            "spatial_merge_size": MERGE,
            "spatial_patch_size": PATCH,
            "temporal_patch_size": TEMPORAL_PATCH,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": MROPE_SECTION},
        "vocab_size": vocab_size,
    }


def tokenizer_config(ids: dict) -> dict:
    """Qwen2-VL-2B-Instruct's tokenizer_config.json layout, without the chat template."""
    added = {}
    for t in SPECIAL_TOKENS:
        added[str(ids[t])] = {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
    return {
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": SPECIAL_TOKENS[1:],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": ENDOFTEXT,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def preprocessor_config() -> dict:
    return {
        "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS,
        "patch_size": PATCH,
        "temporal_patch_size": TEMPORAL_PATCH,
        "merge_size": MERGE,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
    }


def legacy_name(name: str) -> str:
    """transformers 5 module name -> original Qwen2-VL checkpoint key."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model.") :]
    if name.startswith("model.visual."):
        return "visual." + name[len("model.visual.") :]
    assert name == "lm_head.weight", name
    return name


def init_weights(shapes: dict[str, tuple]) -> dict[str, torch.Tensor]:
    """Seeded weights: every tensor drawn in key order from one generator."""
    gen = torch.Generator().manual_seed(SEED)
    tensors = {}
    for name in sorted(shapes):
        noise = torch.randn(shapes[name], generator=gen, dtype=torch.float32)
        leaf = name.rsplit(".", 2)[-2:]
        is_norm = any(k in leaf[0] for k in ("norm", "ln_q"))
        if is_norm and leaf[1] == "weight":
            value = 1.0 + NORM_STD * noise
        elif leaf[1] == "bias":
            value = BIAS_STD * noise
        elif name == "visual.patch_embed.proj.weight":
            value = PATCH_EMBED_STD * noise
        else:
            value = WEIGHT_STD * noise
        tensors[name] = value.contiguous()
    return tensors


def write_model_dir(tok: Tokenizer) -> dict:
    if MODEL_DIR.exists():
        shutil.rmtree(MODEL_DIR)
    MODEL_DIR.mkdir(parents=True)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    vocab_size = tok.get_vocab_size()
    tok.save(str(MODEL_DIR / "tokenizer.json"), pretty=True)
    write_json(MODEL_DIR / "tokenizer_config.json", tokenizer_config(ids))
    write_json(MODEL_DIR / "config.json", model_config(ids, vocab_size))
    write_json(MODEL_DIR / "preprocessor_config.json", preprocessor_config())

    config = transformers.AutoConfig.from_pretrained(str(MODEL_DIR), local_files_only=True)
    skeleton = transformers.Qwen2VLForConditionalGeneration(config)
    shapes = {legacy_name(n): tuple(p.shape) for n, p in skeleton.state_dict().items()}
    del skeleton
    shapes["custom_text_proj.weight"] = (COLQWEN_DIM, HIDDEN)
    shapes["custom_text_proj.bias"] = (COLQWEN_DIM,)
    tensors = init_weights(shapes)
    save_file(tensors, str(MODEL_DIR / "model.safetensors"), metadata={"format": "pt"})
    return {"ids": ids, "vocab_size": vocab_size, "tensors": tensors, "config": config}


# ----------------------------------------------------------------------------------------------
# Images


def make_image(name: str, width: int, height: int) -> Image.Image:
    """A deterministic RGB test pattern: gradients, thin stripes and rows of dark 'words'."""
    rng = np.random.default_rng(SEED + sum(map(ord, name)))
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 40 + 200 * x / max(width - 1, 1)
    g = 30 + 190 * y / max(height - 1, 1)
    b = 128 + 100 * np.sin(x / 3.0 + y / 5.0)
    img = np.stack([r, g, b], axis=-1)
    img[:, ::5, 2] = 20  # thin vertical stripes in blue
    img[::6, :, 1] = 240  # thin horizontal lines in green
    # "text": dark dashes of random lengths on lines 7 px apart
    for top in range(2, height - 2, 7):
        col = int(rng.integers(0, 4))
        while col < width - 1:
            length = int(rng.integers(2, 9))
            shade = float(rng.integers(0, 60))
            img[top : top + 3, col : min(col + length, width - 1)] = shade
            col += length + int(rng.integers(1, 4))
    img[0, 0] = (255, 0, 0)  # corner markers
    img[-1, -1] = (0, 0, 255)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), mode="RGB")


def write_images() -> dict[str, Image.Image]:
    if IMAGE_DIR.exists():
        shutil.rmtree(IMAGE_DIR)
    IMAGE_DIR.mkdir(parents=True)
    images = {}
    for name, (w, h) in IMAGES.items():
        path = IMAGE_DIR / f"{name}.png"
        make_image(name, w, h).save(path, format="PNG", optimize=False, compress_level=9)
        with Image.open(path) as im:
            images[name] = im.convert("RGB")
            assert images[name].size == (w, h)
    return images


def gme_smart_resize(height: int, width: int) -> tuple[int, int]:
    """gme_inference.py's smart_resize (copied there from qwen_vl_utils): max(factor, round) guards, and an
    over-wide ratio is clamped with a warning instead of raising."""
    h_bar = max(FACTOR, round(height / FACTOR) * FACTOR)
    w_bar = max(FACTOR, round(width / FACTOR) * FACTOR)
    if h_bar * w_bar > GME_FETCH_MAX_PIXELS:
        beta = math.sqrt((height * width) / GME_FETCH_MAX_PIXELS)
        h_bar = math.floor(height / beta / FACTOR) * FACTOR
        w_bar = math.floor(width / beta / FACTOR) * FACTOR
    elif h_bar * w_bar < GME_FETCH_MIN_PIXELS:
        beta = math.sqrt(GME_FETCH_MIN_PIXELS / (height * width))
        h_bar = math.ceil(height * beta / FACTOR) * FACTOR
        w_bar = math.ceil(width * beta / FACTOR) * FACTOR
    if max(h_bar, w_bar) / min(h_bar, w_bar) > GME_MAX_RATIO:
        if h_bar > w_bar:
            h_bar = w_bar * GME_MAX_RATIO
        else:
            w_bar = h_bar * GME_MAX_RATIO
    return h_bar, w_bar


def gme_fetch_image(image: Image.Image) -> Image.Image:
    """gme_inference.fetch_image for an in-memory image: RGB, smart_resize, PIL resize with its default filter."""
    image = image.convert("RGB")
    width, height = image.size
    h, w = gme_smart_resize(height, width)
    return image.resize((w, h))


def try_smart_resize(h: int, w: int, min_pixels: int, max_pixels: int):
    try:
        return list(hf_smart_resize(h, w, factor=FACTOR, min_pixels=min_pixels, max_pixels=max_pixels))
    except ValueError as e:
        return {"raises": str(e)}


def pil_bicubic_resize_u8(image: Image.Image, h: int, w: int) -> np.ndarray:
    return np.asarray(image.resize((w, h), resample=Image.Resampling.BICUBIC))


# ----------------------------------------------------------------------------------------------
# Model runs


def load_qwen2vl(attn: str):
    model, info = transformers.Qwen2VLForConditionalGeneration.from_pretrained(
        str(MODEL_DIR), local_files_only=True, dtype=torch.float32, attn_implementation=attn,
        output_loading_info=True,
    )  # fmt: skip
    assert not info["missing_keys"], info["missing_keys"]
    assert set(info["unexpected_keys"]) == {"custom_text_proj.weight", "custom_text_proj.bias"}, info
    assert not info["mismatched_keys"], info["mismatched_keys"]
    return model.eval()


@contextlib.contextmanager
def capture_position_ids(model):
    """Records the position_ids the decoder receives (None means it falls back to arange)."""
    seen = []

    def pre_hook(_module, _args, kwargs):
        seen.append(kwargs.get("position_ids"))

    handle = model.model.language_model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def effective_positions(pos, batch: int, length: int) -> tuple[torch.Tensor, str]:
    if pos is None:
        return torch.arange(length).view(1, 1, -1).expand(3, batch, -1).clone(), "arange"
    assert pos.shape == (3, batch, length), pos.shape
    return pos.clone(), "get_rope_index"


@torch.inference_mode()
def run_text_case(model, enc: dict) -> dict:
    kwargs = {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                                  "mm_token_type_ids") if k in enc}  # fmt: skip
    layer_outputs = []
    handles = [layer.register_forward_hook(lambda _m, _i, o: layer_outputs.append(o[0] if isinstance(o, tuple) else o))
               for layer in model.model.language_model.layers]  # fmt: skip
    try:
        with capture_position_ids(model) as seen:
            out = model.model(**kwargs, output_hidden_states=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    # transformers 5: hidden_states = (decoder input embeddings, output of layer 0, ..., output of layer N-2,
    # final-normed output of layer N-1 == last_hidden_state)
    assert len(out.hidden_states) == LAYERS + 1
    for i in range(LAYERS - 1):
        assert torch.equal(out.hidden_states[i + 1], layer_outputs[i])
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    batch, length = enc["input_ids"].shape
    pos, source = effective_positions(seen[0], batch, length)
    return {
        "last_hidden_state": out.last_hidden_state,
        "hidden_states": torch.stack(out.hidden_states),
        "position_ids": pos,
        "position_source": source,
    }


@torch.inference_mode()
def run_vision(model, pixel_values: torch.Tensor, grid: torch.Tensor) -> dict:
    visual = model.model.visual
    captured = {}

    def keep(name):
        def hook(_m, _i, output):
            captured[name] = (output[0] if isinstance(output, tuple) else output).clone()

        return hook

    handles = [
        visual.patch_embed.register_forward_hook(keep("patch_embed")),
        visual.blocks[0].register_forward_hook(keep("block0")),
        visual.blocks[-1].register_forward_hook(keep("blocks_out")),
        visual.merger.register_forward_hook(keep("merged")),
    ]
    try:
        out = visual(pixel_values, grid_thw=grid)
    finally:
        for h in handles:
            h.remove()
    assert torch.equal(out.pooler_output, captured["merged"])
    assert torch.equal(out.last_hidden_state, captured["blocks_out"])
    return captured


def gme_pool(hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """gme_inference.GmeQwen2VL.forward's pooling: last position if every row ends unpadded (left
    padding), else the last unmasked position of each row; then L2 normalisation."""
    if int(mask[:, -1].sum()) == mask.shape[0]:
        idx = [hidden.shape[1] - 1] * hidden.shape[0]
    else:
        idx = (mask.sum(dim=1) - 1).tolist()
    emb = hidden[torch.arange(hidden.shape[0]), torch.tensor(idx)]
    return torch.nn.functional.normalize(emb, p=2, dim=1), idx


@torch.inference_mode()
def gme_forward(model, enc: dict, image_token_id: int, positions: str) -> dict:
    """positions="sequential": gme_inference.py under transformers <= 4.51: inputs_embeds with the
    image features scattered in, then the text decoder with position_ids=None, i.e. 0..L-1 on all three
    M-RoPE axes for every token. positions="mrope": the standard Qwen2VLModel forward (get_rope_index)."""
    if positions == "sequential":
        input_ids = enc["input_ids"]
        embeds = model.model.get_input_embeddings()(input_ids).clone()
        if "pixel_values" in enc:
            image_embeds = model.model.visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output
            embeds[input_ids == image_token_id] = image_embeds
        with capture_position_ids(model) as seen:
            out = model.model.language_model(
                inputs_embeds=embeds, attention_mask=enc["attention_mask"], position_ids=None, use_cache=False
            )
        assert seen == [None]
    else:
        kwargs = {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                                      "mm_token_type_ids") if k in enc}  # fmt: skip
        out = model.model(**kwargs, use_cache=False)
    emb, idx = gme_pool(out.last_hidden_state, enc["attention_mask"])
    return {"embedding": emb, "pool_index": idx, "last_hidden_state": out.last_hidden_state}


def gme_prompt(text, has_image: bool, is_query: bool, instruction) -> str:
    """gme_inference.GmeQwen2VL.embed's prompt: the instruction is used only for queries (else the default)."""
    if not is_query or instruction is None:
        instruction = GME_DEFAULT_INSTRUCTION
    body = (VISION_START + IMAGE_PAD + VISION_END if has_image else "") + (text if text is not None else "")
    return (
        f"{IM_START}system\n{instruction}{IM_END}\n{IM_START}user\n{body}{IM_END}\n"
        f"{IM_START}assistant\n{ENDOFTEXT}"
    )


def colqwen_doc_prompt() -> str:
    return f"{IM_START}user\n{VISION_START}{IMAGE_PAD}{VISION_END}Describe the image.{IM_END}{ENDOFTEXT}"


# ----------------------------------------------------------------------------------------------


def main() -> int:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    import colpali_engine  # noqa: F401  (fails early if the venv lacks it)
    from colpali_engine.models import ColQwen2, ColQwen2Processor

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    info = write_model_dir(tok)
    ids, vocab_size, base_tensors = info["ids"], info["vocab_size"], info["tensors"]
    image_token_id = ids[IMAGE_PAD]
    pil_images = write_images()
    tensors_ip, tensors_vis, tensors_text, tensors_gme, tensors_col = {}, {}, {}, {}, {}
    ref: dict = {"generator": GENERATOR}

    # --- tokenizer, as transformers loads it ---
    def load_tokenizer(padding_side: str):
        t = transformers.AutoTokenizer.from_pretrained(str(MODEL_DIR), local_files_only=True)
        t.padding_side = padding_side
        return t

    hf_tok = load_tokenizer("right")
    raw_tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    assert len(hf_tok) == vocab_size, (len(hf_tok), vocab_size)
    assert hf_tok.pad_token == ENDOFTEXT and hf_tok.eos_token == IM_END and hf_tok.bos_token is None
    for t in SPECIAL_TOKENS:
        assert hf_tok.convert_tokens_to_ids(t) == ids[t], t

    def tok_ids(text: str) -> list[int]:
        got = hf_tok(text, add_special_tokens=False)["input_ids"]
        raw = raw_tok.encode(text, add_special_tokens=False).ids
        assert got == raw, (text, got, raw)  # transformers' Qwen2Tokenizer must agree with tokenizer.json
        assert hf_tok(text)["input_ids"] == got  # Qwen2 adds no BOS/EOS
        return got

    tokenize_cases = []
    for text in ["Where does the river run?", " Query: how heavy is the order?", "12345 2.5 kg",
                 "Héllo wörld — 東京 🚀", "line one\n\nline two\n", "We'll see; it's fine.",
                 f"{IM_START}user\n{VISION_START}{IMAGE_PAD}{IMAGE_PAD}{VISION_END}hi{IM_END}{ENDOFTEXT}",
                 "<|image_pad|><|image_pad|>x<|endoftext|><|endoftext|>", "café", "cafe\u0301"]:  # fmt: skip
        case_ids = tok_ids(text)
        tokenize_cases.append({"text": text, "ids": case_ids, "tokens": hf_tok.convert_ids_to_tokens(case_ids),
                               "decoded": hf_tok.decode(case_ids)})  # fmt: skip
    ref["tokenizer"] = {
        "bpe_vocab_size": BPE_VOCAB_SIZE,
        "vocab_size": vocab_size,
        "special_token_ids": ids,
        "pre_tokenizer_regex": QWEN2_PATTERN,
        "normalizer": "NFC",
        "transformers_class": type(hf_tok).__name__,
        "cases": tokenize_cases,
    }

    # --- image processor (PIL backend) ---
    ip = transformers.AutoImageProcessor.from_pretrained(str(MODEL_DIR), local_files_only=True, backend="pil")
    assert isinstance(ip, Qwen2VLImageProcessorPil), type(ip)
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (MIN_PIXELS, MAX_PIXELS), ip.size
    assert int(ip.resample) == int(Image.Resampling.BICUBIC), ip.resample
    ip_tv = transformers.AutoImageProcessor.from_pretrained(str(MODEL_DIR), local_files_only=True,
                                                            backend="torchvision")  # fmt: skip
    image_ref = {}
    pixel_values, grids = {}, {}
    for name, im in pil_images.items():
        w, h = im.size
        out = ip(images=[im], return_tensors="pt")
        pv, grid = out["pixel_values"], out["image_grid_thw"]
        t, gh, gw = grid[0].tolist()
        rh, rw = gh * PATCH, gw * PATCH
        assert [rh, rw] == list(hf_smart_resize(h, w, FACTOR, MIN_PIXELS, MAX_PIXELS))
        assert pv.shape == (gh * gw, PATCH_DIM) and pv.dtype == torch.float32
        # the resize on its own: PIL bicubic on the uint8 image
        resized = pil_bicubic_resize_u8(im, rh, rw)
        # pixel_values from it, independently of transformers: rescale, normalise, patchify
        x = resized.astype(np.float32).transpose(2, 0, 1) * np.float32(1 / 255)
        x = (x - np.array(CLIP_MEAN, np.float32)[:, None, None]) / np.array(CLIP_STD, np.float32)[:, None, None]
        x = x.reshape(3, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH).transpose(1, 4, 2, 5, 0, 3, 6)
        x = np.repeat(x[:, :, :, :, :, None], TEMPORAL_PATCH, axis=5).reshape(gh * gw, PATCH_DIM)
        own_diff = float(np.abs(x - pv.numpy()).max())
        assert own_diff < 1e-6, (name, own_diff)
        tv = ip_tv(images=[im], return_tensors="pt")
        assert torch.equal(tv["image_grid_thw"], grid)
        tensors_ip[f"{name}.resized_u8"] = torch.from_numpy(resized.copy())
        tensors_ip[f"{name}.pixel_values"] = pv.contiguous()
        tensors_ip[f"{name}.image_grid_thw"] = grid.to(torch.int64)
        pixel_values[name], grids[name] = pv, grid
        image_ref[name] = {
            "file": f"images/{name}.png",
            "width": w,
            "height": h,
            "resized_height": rh,
            "resized_width": rw,
            "image_grid_thw": [t, gh, gw],
            "num_patches": gh * gw,
            "num_image_tokens": gh * gw // (MERGE * MERGE),
            "own_numpy_pixel_values_max_abs_diff": own_diff,
            "torchvision_backend_pixel_values_max_abs_diff": float((tv["pixel_values"] - pv).abs().max()),
        }
        print(f"image {name:6s} {w}x{h} -> {rw}x{rh}, grid {[t, gh, gw]}, {gh * gw // 4} tokens")
    resize_table = []
    for h, w in RESIZE_ONLY_CASES:
        resize_table.append({
            "height": h, "width": w,
            "transformers": try_smart_resize(h, w, MIN_PIXELS, MAX_PIXELS),
            "transformers_gme_real_bounds": try_smart_resize(
                h, w, GME_REAL_MIN_IMAGE_TOKENS * 784, GME_REAL_MAX_IMAGE_TOKENS * 784),
            "gme_fetch_image": list(gme_smart_resize(h, w)),
        })  # fmt: skip
    ref["image_processor"] = {
        "class": type(ip).__name__,
        "backend": "pil",
        "resample": "PIL.Image.Resampling.BICUBIC (3) on the uint8 RGB image, Pillow " + PIL.__version__,
        "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS,
        "rescale_factor": 1 / 255,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "images": image_ref,
        "smart_resize_table": resize_table,
    }

    # --- models ---
    model = load_qwen2vl("eager")
    model_sdpa = load_qwen2vl("sdpa")
    assert model.config._attn_implementation == "eager"
    assert model.config.vision_config._attn_implementation == "eager"
    assert model.config.text_config.rope_parameters["mrope_section"] == MROPE_SECTION
    loaded = model.state_dict()
    for name, value in base_tensors.items():
        if name.startswith("custom_text_proj"):
            continue
        new = ("model.language_model." + name[6:]) if name.startswith("model.") else (
            "model." + name if name.startswith("visual.") else name)  # fmt: skip
        assert torch.equal(loaded[new], value), name
    rotary = model.model.language_model.rotary_emb
    vrotary = model.model.visual.rotary_pos_emb
    tensors_text["text.inv_freq"] = rotary.inv_freq.float().contiguous()
    tensors_vis["vision.inv_freq"] = vrotary.inv_freq.float().contiguous()

    # --- vision tower, one image at a time ---
    vision_ref = {}
    tol_vision = []
    from transformers.vision_utils import get_vision_position_ids

    for name in IMAGES:
        stages = run_vision(model, pixel_values[name], grids[name])
        stages_sdpa = run_vision(model_sdpa, pixel_values[name], grids[name])
        for key, value in stages.items():
            tensors_vis[f"{name}.{key}"] = value.contiguous()
        tensors_vis[f"{name}.rotary_position_ids"] = get_vision_position_ids(grids[name], MERGE).to(torch.int64)
        tol_vision.append(stat(stages_sdpa["merged"], stages["merged"]))
        vision_ref[name] = {k: list(v.shape) for k, v in stages.items()}
        print(f"vision {name:6s} merged {tuple(stages['merged'].shape)} std {float(stages['merged'].std()):.3f}")
    # two images in one call (cu_seqlens keeps them apart): equals the single-image results
    with torch.inference_mode():
        pair = model.model.visual(torch.cat([pixel_values["tall"], pixel_values["wide"]]),
                                  grid_thw=torch.cat([grids["tall"], grids["wide"]])).pooler_output  # fmt: skip
    pair_single = torch.cat([tensors_vis["tall.merged"], tensors_vis["wide.merged"]])
    vision_ref["_two_images_in_one_call_vs_separately"] = stat(pair, pair_single)

    # --- text cases through Qwen2VLModel (the model-stage references) ---
    # transformers 5 processors insist on a video processor; it is never used here
    video_proc = transformers.Qwen2VLVideoProcessor()

    def make_processor(image_processor, padding_side: str, cls=transformers.Qwen2VLProcessor):
        return cls(image_processor=image_processor, tokenizer=load_tokenizer(padding_side), video_processor=video_proc)

    proc_right = make_processor(ip, "right")
    proc_left = make_processor(ip, "left")
    query_text = "Where does the river run?"
    fused_text = "Which page shows the table of results?"
    cases = [
        ("text_only", [gme_prompt(query_text, False, True, GME_QUERY_INSTRUCTION)], [], "right"),
        ("image_only", [gme_prompt(None, True, False, None)], ["normal"], "right"),
        ("text_image", [gme_prompt(fused_text, True, True, None)], ["odd"], "right"),
        ("mixed_batch", [gme_prompt(query_text, False, True, GME_QUERY_INSTRUCTION),
                         gme_prompt(None, True, False, None)], ["tiny"], "right"),
        ("two_images", [colqwen_doc_prompt(), colqwen_doc_prompt()], ["tall", "odd"], "left"),
    ]  # fmt: skip
    text_ref = {}
    tol_text = []
    for case, prompts, image_names, side in cases:
        proc = proc_right if side == "right" else proc_left
        enc = proc(text=prompts, images=[pil_images[n] for n in image_names] or None, padding=True,
                   return_tensors="pt")  # fmt: skip
        if image_names:
            assert torch.equal(enc["pixel_values"], torch.cat([pixel_values[n] for n in image_names]))
        if len(prompts) > 1:
            assert len(set(enc["attention_mask"].sum(1).tolist())) == len(prompts), "rows need different lengths"
        run = run_text_case(model, enc)
        run_sdpa = run_text_case(model_sdpa, enc)
        mask = enc["attention_mask"].bool()
        tol_text.append(stat(run_sdpa["last_hidden_state"][mask], run["last_hidden_state"][mask]))
        with torch.inference_mode():
            rope_index, rope_deltas = model.model.get_rope_index(
                enc["input_ids"], mm_token_type_ids=enc["mm_token_type_ids"],
                image_grid_thw=enc.get("image_grid_thw"), attention_mask=enc["attention_mask"])  # fmt: skip
        if run["position_source"] == "get_rope_index":
            assert torch.equal(rope_index, run["position_ids"])
        # each row of a batch must match the same prompt run alone (real tokens only)
        solo_diffs = []
        if len(prompts) > 1:
            images_left = list(image_names)
            for row, prompt in enumerate(prompts):
                row_images = [images_left.pop(0)] if IMAGE_PAD in prompt else []
                solo = proc(text=[prompt], images=[pil_images[n] for n in row_images] or None,
                            return_tensors="pt")  # fmt: skip
                solo_run = run_text_case(model, solo)
                solo_diffs.append(stat(run["last_hidden_state"][row][mask[row]], solo_run["last_hidden_state"][0]))
        for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
            tensors_text[f"{case}.{key}"] = enc[key].to(torch.int64).contiguous()
        tensors_text[f"{case}.position_ids"] = run["position_ids"].to(torch.int64).contiguous()
        tensors_text[f"{case}.rope_index"] = rope_index.to(torch.int64).contiguous()
        tensors_text[f"{case}.rope_deltas"] = rope_deltas.to(torch.int64).contiguous()
        tensors_text[f"{case}.last_hidden_state"] = run["last_hidden_state"].contiguous()
        if case == "text_image":  # decoder input embeddings (image features scattered in) and layer outputs
            tensors_text[f"{case}.layer_inputs"] = run["hidden_states"][:-1].contiguous()
        text_ref[case] = {
            "prompts": prompts,
            "images": image_names,
            "padding_side": side,
            "shape": list(enc["input_ids"].shape),
            "lengths": enc["attention_mask"].sum(1).tolist(),
            "position_ids_used": run["position_source"],
            "rows_vs_alone": solo_diffs,
        }
        print(f"text {case:12s} {tuple(enc['input_ids'].shape)} positions {run['position_source']:14s} "
              f"std {float(run['last_hidden_state'][mask].std()):.3f}")  # fmt: skip
    # attention must not be uniform: entropy of the last text-only query row, layer 2
    with torch.inference_mode():
        enc = proc_right(text=[cases[0][1][0]], return_tensors="pt")
        att = model.model(**enc, output_attentions=True).attentions[-1][0, :, -1, :]
    n = att.shape[-1]
    entropy = float(-(att * att.clamp_min(1e-30).log()).sum(-1).mean())
    assert entropy < 0.85 * math.log(n), entropy
    ref["text"] = {
        "cases": text_ref,
        "attention_entropy_last_row": round(entropy, 4),
        "uniform_entropy": round(math.log(n), 4),
    }

    # --- GME ---
    gme_ip = Qwen2VLImageProcessorPil(min_pixels=GME_MIN_IMAGE_TOKENS * 784, max_pixels=GME_MAX_IMAGE_TOKENS * 784,
                                      image_mean=CLIP_MEAN, image_std=CLIP_STD)  # fmt: skip
    gme_proc = make_processor(gme_ip, "right")
    gme_cases = [
        ("query_text", [query_text], [None], True, GME_QUERY_INSTRUCTION),
        ("document_image", [None], ["normal"], False, None),
        ("fused", [fused_text], ["tiny"], True, None),
        ("query_batch", [query_text, "How heavy is the order?"], [None, None], True, GME_QUERY_INSTRUCTION),
    ]
    gme_ref = {}
    tol_gme = []
    for case, texts, image_names, is_query, instruction in gme_cases:
        prompts, images = [], []
        for text, image_name in zip(texts, image_names):
            prompts.append(gme_prompt(text, image_name is not None, is_query, instruction))
            if image_name is not None:
                fetched = gme_fetch_image(pil_images[image_name])
                explicit = pil_images[image_name].resize(fetched.size, resample=Image.Resampling.BICUBIC)
                assert np.array_equal(np.asarray(fetched), np.asarray(explicit))  # Pillow's default is BICUBIC
                images.append(fetched)
                tensors_gme[f"{case}.fetched_u8"] = torch.from_numpy(np.asarray(fetched).copy())
        enc = gme_proc(text=prompts, images=images or None, padding=True, truncation=True,
                       max_length=GME_MAX_LENGTH, return_tensors="pt")  # fmt: skip
        entry = {
            "texts": texts,
            "images": image_names,
            "is_query": is_query,
            "instruction_argument": instruction,
            "prompts": prompts,
            "shape": list(enc["input_ids"].shape),
        }
        if images:
            t, gh, gw = enc["image_grid_thw"][0].tolist()
            final = pil_bicubic_resize_u8(images[0], gh * PATCH, gw * PATCH)
            tensors_gme[f"{case}.processor_u8"] = torch.from_numpy(final.copy())
            tensors_gme[f"{case}.image_grid_thw"] = enc["image_grid_thw"].to(torch.int64)
            entry["fetch_image_size_hw"] = [images[0].size[1], images[0].size[0]]
            entry["processor_size_hw"] = [gh * PATCH, gw * PATCH]
            entry["image_grid_thw"] = [t, gh, gw]
        for key in ("input_ids", "attention_mask"):
            tensors_gme[f"{case}.{key}"] = enc[key].to(torch.int64).contiguous()
        for positions in ("sequential", "mrope"):
            res = gme_forward(model, enc, image_token_id, positions)
            res_sdpa = gme_forward(model_sdpa, enc, image_token_id, positions)
            tol_gme.append(stat(res_sdpa["embedding"], res["embedding"]))
            tensors_gme[f"{case}.embedding_{positions}"] = res["embedding"].contiguous()
            entry["pool_index"] = res["pool_index"]
        diff = stat(tensors_gme[f"{case}.embedding_mrope"], tensors_gme[f"{case}.embedding_sequential"])
        entry["sequential_vs_mrope"] = diff
        gme_ref[case] = entry
        print(f"gme {case:15s} {tuple(enc['input_ids'].shape)} pool {entry['pool_index']} seq-vs-mrope {diff}")
    ref["gme"] = {"cases": gme_ref}

    # --- ColQwen2 (colpali-engine) ---
    def load_colqwen2(path: Path, attn: str):
        col, col_info = ColQwen2.from_pretrained(str(path), local_files_only=True, dtype=torch.float32,
                                                 attn_implementation=attn, output_loading_info=True)  # fmt: skip
        return col.eval(), col_info

    col, col_info = load_colqwen2(MODEL_DIR, "eager")
    assert not col_info["missing_keys"], col_info["missing_keys"]
    assert set(col_info["unexpected_keys"]) <= {"lm_head.weight"}, col_info["unexpected_keys"]
    assert torch.equal(col.custom_text_proj.weight, base_tensors["custom_text_proj.weight"])
    assert torch.equal(col.language_model.layers[0].self_attn.q_proj.weight,
                       base_tensors["model.layers.0.self_attn.q_proj.weight"])  # fmt: skip
    col_sdpa, _ = load_colqwen2(MODEL_DIR, "sdpa")
    col_proc = make_processor(ip, "right", cls=ColQwen2Processor)
    assert col_proc.tokenizer.padding_side == "left"
    default_prefix = col_proc.query_prefix
    col_proc.query_prefix = COLQWEN2_QUERY_PREFIX_TRAINED
    queries = [query_text, "How heavy is the order?"]
    doc_images = ["normal", "tall"]
    batches = {
        "query": col_proc.process_queries(queries=queries),
        "document": col_proc.process_images([pil_images[n] for n in doc_images]),
    }
    col_ref = {
        "query_prefix_used": COLQWEN2_QUERY_PREFIX_TRAINED,
        "query_prefix_colpali_0_3_18_default": default_prefix,
        "query_strings": [COLQWEN2_QUERY_PREFIX_TRAINED + q + ENDOFTEXT * COLQWEN2_N_AUGMENTATION for q in queries],
        "query_strings_colpali_0_3_18_default": [default_prefix + q + ENDOFTEXT * COLQWEN2_N_AUGMENTATION
                                                 for q in queries],  # fmt: skip
        "query_strings_transformers_ColQwen2Processor": [
            "Query: " + q + ENDOFTEXT * COLQWEN2_N_AUGMENTATION + "\n" for q in queries],
        "document_prompt": colqwen_doc_prompt(),
        "document_images": doc_images,
        "queries": queries,
    }  # fmt: skip
    assert col_proc.visual_prompt_prefix == colqwen_doc_prompt()
    tol_col = []

    @torch.inference_mode()
    def run_col(m, batch):
        return m(**{k: v for k, v in batch.items()})

    for kind, batch in batches.items():
        assert len(set(batch["attention_mask"].sum(1).tolist())) == 2, "rows need different lengths"
        out = run_col(col, batch)
        out_sdpa = run_col(col_sdpa, batch)
        tol_col.append(stat(out_sdpa, out))
        norms = out.norm(dim=-1)
        mask = batch["attention_mask"].bool()
        assert torch.allclose(norms[mask], torch.ones_like(norms[mask]), atol=1e-5)
        assert float(out[~mask].abs().max() if (~mask).any() else 0.0) == 0.0
        for key in ("input_ids", "attention_mask"):
            tensors_col[f"{kind}.{key}"] = batch[key].to(torch.int64).contiguous()
        tensors_col[f"{kind}.image_mask"] = (batch["input_ids"] == image_token_id).to(torch.uint8).contiguous()
        tensors_col[f"{kind}.embeddings"] = out.contiguous()
        # independent check: projection of Qwen2VLModel's last hidden state, L2 norm, times the mask
        enc = {k: batch[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids")}
        if kind == "document":
            grid = batch["image_grid_thw"]
            enc["pixel_values"] = torch.cat([pv[: int(g[1] * g[2])] for pv, g in zip(batch["pixel_values"], grid)])
            enc["image_grid_thw"] = grid
            assert torch.equal(enc["pixel_values"], torch.cat([pixel_values[n] for n in doc_images]))
        hidden = run_text_case(model, enc)["last_hidden_state"]
        proj = torch.nn.functional.linear(hidden, base_tensors["custom_text_proj.weight"],
                                          base_tensors["custom_text_proj.bias"])  # fmt: skip
        mine = proj / proj.norm(dim=-1, keepdim=True) * batch["attention_mask"].unsqueeze(-1)
        rows = []
        for row in range(out.shape[0]):
            alone = (col_proc.process_queries(queries=[queries[row]]) if kind == "query"
                     else col_proc.process_images([pil_images[doc_images[row]]]))  # fmt: skip
            rows.append(stat(out[row][mask[row]], run_col(col, alone)[0]))
        col_ref[f"{kind}_rows_vs_alone"] = rows
        col_ref[f"{kind}_shape"] = list(out.shape)
        col_ref[f"{kind}_lengths"] = batch["attention_mask"].sum(1).tolist()
        col_ref[f"{kind}_own_head_vs_colpali"] = stat(mine, out)
        print(f"colqwen2 {kind:8s} {tuple(out.shape)} own-head diff {col_ref[f'{kind}_own_head_vs_colpali']}")
    col_ref["document_pixel_values_padded_shape"] = list(batches["document"]["pixel_values"].shape)

    # --- LoRA adapter ---
    if LORA_DIR.exists():
        shutil.rmtree(LORA_DIR)
    LORA_DIR.mkdir(parents=True)
    lora_config = peft.LoraConfig(
        r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.1, init_lora_weights="gaussian", bias="none",
        task_type="FEATURE_EXTRACTION", target_modules=COLQWEN2_TARGET_MODULES,
        base_model_name_or_path=MODEL_DIR_NAME, inference_mode=True,
    )  # fmt: skip
    lora_config.save_pretrained(str(LORA_DIR))
    adapter_config = json.loads((LORA_DIR / "adapter_config.json").read_text())
    target_re = re.compile(COLQWEN2_TARGET_MODULES)
    # module names in the original (legacy) checkpoint layout that the regex selects (re.fullmatch, as PEFT)
    linears = [k[: -len(".weight")] for k, v in base_tensors.items() if k.endswith(".weight") and v.ndim == 2]
    modules = sorted(m for m in linears if target_re.fullmatch(m))
    gen = torch.Generator().manual_seed(SEED + 1)
    adapter, merged = {}, dict(base_tensors)
    scaling = LORA_ALPHA / LORA_R
    for module in modules:
        out_f, in_f = base_tensors[module + ".weight"].shape
        a = (LORA_STD * torch.randn((LORA_R, in_f), generator=gen)).contiguous()
        b = (LORA_STD * torch.randn((out_f, LORA_R), generator=gen)).contiguous()
        adapter[f"base_model.model.{module}.lora_A.weight"] = a
        adapter[f"base_model.model.{module}.lora_B.weight"] = b
        merged[module + ".weight"] = (base_tensors[module + ".weight"] + scaling * (b @ a)).contiguous()
    save_file(adapter, str(LORA_DIR / "adapter_model.safetensors"), metadata={"format": "pt"})
    # (1) the official path: colpali's ColQwen2.from_pretrained(adapter dir) loads the base model named in
    # adapter_config.json (relative to the working directory here) and the adapter through transformers' PEFT
    # integration, remapping legacy keys with ColQwen2's _checkpoint_conversion_mapping.
    cwd = os.getcwd()
    os.chdir(OUT_DIR)
    try:
        col_lora, lora_info = load_colqwen2(Path(LORA_DIR_NAME), "eager")
        col_lora_sdpa, _ = load_colqwen2(Path(LORA_DIR_NAME), "sdpa")
    finally:
        os.chdir(cwd)
    n_lora_layers = sum(1 for _, m in col_lora.named_modules() if hasattr(m, "lora_A"))
    assert n_lora_layers == len(modules), (n_lora_layers, len(modules))
    for module in modules:
        new = module.replace("model.layers.", "language_model.layers.")
        layer = col_lora.get_submodule(new)
        assert torch.equal(layer.lora_A["default"].weight, adapter[f"base_model.model.{module}.lora_A.weight"]), module
        assert torch.equal(layer.lora_B["default"].weight, adapter[f"base_model.model.{module}.lora_B.weight"]), module
        assert layer.scaling["default"] == scaling
    # (2) independent: merge W + (alpha / r) * B @ A by hand into a full checkpoint and load that
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(MODEL_DIR / f, Path(tmp) / f)
        save_file(merged, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        col_merged, _ = load_colqwen2(Path(tmp), "eager")
    lora_ref = {
        "adapter_dir": LORA_DIR_NAME,
        "r": LORA_R,
        "lora_alpha": LORA_ALPHA,
        "scaling": scaling,
        "target_modules": COLQWEN2_TARGET_MODULES,
        "targeted_modules": modules,
        "adapter_keys": sorted(adapter),
        "adapter_config": adapter_config,
    }
    q1 = col_proc.process_queries(queries=[queries[0]])
    d1 = col_proc.process_images([pil_images["normal"]])
    for kind, batch in (("query", q1), ("document", d1)):
        out = run_col(col_lora, batch)
        out_merged = run_col(col_merged, batch)
        out_base = run_col(col, batch)
        tol_col.append(stat(run_col(col_lora_sdpa, batch), out))
        lora_ref[f"{kind}_peft_vs_hand_merged"] = stat(out_merged, out)
        lora_ref[f"{kind}_lora_vs_base"] = stat(out, out_base)
        assert lora_ref[f"{kind}_peft_vs_hand_merged"]["max_abs"] < 1e-4, lora_ref
        assert lora_ref[f"{kind}_lora_vs_base"]["max_abs"] > 1e-2, lora_ref
        for key in ("input_ids", "attention_mask"):
            tensors_col[f"lora.{kind}.{key}"] = batch[key].to(torch.int64).contiguous()
        tensors_col[f"lora.{kind}.embeddings"] = out.contiguous()
        print(f"lora {kind:8s} {tuple(out.shape)} peft-vs-merged {lora_ref[f'{kind}_peft_vs_hand_merged']} "
              f"vs base {lora_ref[f'{kind}_lora_vs_base']}")  # fmt: skip
    col_ref["lora"] = lora_ref
    ref["colqwen2"] = col_ref

    ref["vision"] = vision_ref
    ref["conventions"] = {
        "gme": {
            "source": "gme_inference.py / modeling_gme_qwen2vl.py of Alibaba-NLP/gme-Qwen2-VL-2B-Instruct (see README)",
            "prompt": "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{image?}{text?}<|im_end|>\n"
                      "<|im_start|>assistant\n<|endoftext|>",
            "image_placeholder": VISION_START + IMAGE_PAD + VISION_END,
            "image_before_text": True,
            "default_instruction": GME_DEFAULT_INSTRUCTION,
            "instruction_rule": "the caller's instruction only when is_query (default True) and one is given; "
                                "documents (is_query=False) always get the default",
            "padding_side": "right",
            "pooling": "hidden state of the last unmasked token of the final-normed last layer, L2-normalised",
            "positions": "sequential 0..L-1 on all three M-RoPE axes for every token (transformers <= 4.51 text "
                         "decoder called with position_ids=None); embedding_mrope = Qwen2VLModel's get_rope_index",
            "fetch_image": {"factor": FACTOR, "min_pixels": GME_FETCH_MIN_PIXELS, "max_pixels": GME_FETCH_MAX_PIXELS,
                            "max_ratio": GME_MAX_RATIO, "resample": "PIL Image.resize default = BICUBIC"},
            "processor_pixels_real": {"min_pixels": GME_REAL_MIN_IMAGE_TOKENS * 784,
                                      "max_pixels": GME_REAL_MAX_IMAGE_TOKENS * 784},
            "processor_pixels_fixture": {"min_pixels": GME_MIN_IMAGE_TOKENS * 784,
                                         "max_pixels": GME_MAX_IMAGE_TOKENS * 784},
            "max_length": GME_MAX_LENGTH,
        },
        "colqwen2": {
            "source": "colpali-engine 0.3.18 ColQwen2 / ColQwen2Processor (and git history, see README)",
            "document_prompt": colqwen_doc_prompt(),
            "query": "query_prefix + query + 10 x <|endoftext|>; query_prefix 'Query: ' (<= 0.3.12, used to train "
                     "vidore/colqwen2-v1.0) or '' (>= 0.3.13)",
            "padding_side": "left",
            "head": "custom_text_proj Linear(hidden, 128) on Qwen2VLModel's last_hidden_state, v / ||v||_2, "
                    "times attention_mask",
            "checkpoint_keys": "model.* (text decoder), visual.*, custom_text_proj.{weight,bias}; no lm_head",
        },
        "lora": {
            "scaling": "lora_alpha / r (lora_alpha / sqrt(r) if use_rslora)",
            "delta": "W' = W + scaling * (lora_B.weight @ lora_A.weight); lora_A (r, in), lora_B (out, r)",
            "adapter_keys": "base_model.model.<module>.lora_A.weight / .lora_B.weight, <module> in the original "
                            "checkpoint layout (model.layers.N.self_attn.q_proj, custom_text_proj)",
        },
    }
    ref["image_processor"]["notes"] = {
        "tiny_images_transformers_4_51": "smart_resize raised ValueError('height:9 and width:12 must be larger "
                                          "than factor:28') for sides < 28; transformers 5.23 upscales instead",
        "pixel_values_row_order": "rows = 14x14 patches in (merge-block row, merge-block col, row in block, col in "
                                  "block) order; each row = (channel 3, temporal 2 (the image twice), 14, 14)",
    }
    ref["tolerances"] = {
        "what": "max |sdpa - eager| (abs) and that / max |eager| (rel), float32 CPU, over the real tokens",
        "vision_merged": merge_stats(tol_vision),
        "text_last_hidden_state": merge_stats(tol_text),
        "gme_embeddings": merge_stats(tol_gme),
        "colqwen2_embeddings": merge_stats(tol_col),
    }
    ref["versions"] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "pillow": PIL.__version__,
        "peft": peft.__version__,
        "colpali_engine": pkg_version("colpali-engine"),
        "attention_reference": "eager",
    }

    save_file(tensors_ip, str(OUT_DIR / "image_processor.safetensors"), metadata={"format": "pt"})
    save_file(tensors_vis, str(OUT_DIR / "vision.safetensors"), metadata={"format": "pt"})
    save_file(tensors_text, str(OUT_DIR / "text.safetensors"), metadata={"format": "pt"})
    save_file(tensors_gme, str(OUT_DIR / "gme.safetensors"), metadata={"format": "pt"})
    save_file(tensors_col, str(OUT_DIR / "colqwen2.safetensors"), metadata={"format": "pt"})
    ref["tensors"] = {
        f: {k: f"{str(v.dtype).replace('torch.', '')} {list(v.shape)}"
            for k, v in sorted(load_file(str(OUT_DIR / f)).items())}
        for f in ("image_processor.safetensors", "vision.safetensors", "text.safetensors", "gme.safetensors",
                  "colqwen2.safetensors")
    }  # fmt: skip
    write_json(OUT_DIR / "reference.json", ref, compact=True)
    print(f"tolerances: {ref['tolerances']}")
    total = sum(p.stat().st_size for p in OUT_DIR.rglob("*") if p.is_file())
    print(f"wrote {OUT_DIR} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
