#!/usr/bin/env python3
"""Generates services/models/tests/fixtures/llama/: a tiny random Llama-3.1-style causal LM (an HF
model directory) and the outputs HF transformers computes with it, which Folio's own Llama ranker
(Rust, candle) is checked against.

What it writes (all deterministic; a second run gives identical bytes):
  tiny-llama31/config.json            Meta's Llama-3.1-8B-Instruct config.json layout (rope_theta +
                                      rope_scaling llama3, eos list [end_of_text, eom, eot]), shrunk:
                                      hidden 64, 2 layers, 4 query heads, 2 KV heads (GQA), head_dim 16.
  tiny-llama31/generation_config.json Meta's layout (bos, eos list, do_sample, temperature, top_p).
  tiny-llama31/model.safetensors      float32 weights drawn from a seeded generator (see init_weights).
  tiny-llama31/tokenizer.json         byte-level BPE trained here on CORPUS with Llama 3's pipeline:
                                      Split(Llama-3 regex, Isolated) + ByteLevel(no prefix space, no
                                      regex) pre-tokenizer, BPE with ignore_merges, ByteLevel decoder,
                                      ByteLevel + TemplateProcessing post-processor that prepends
                                      <|begin_of_text|>, and 11 special tokens after the BPE vocabulary in
                                      Llama 3.1's order.
  tiny-llama31/tokenizer_config.json  Meta's layout, with Meta's official Llama-3.1-8B-Instruct
  tiny-llama31/special_tokens_map.json  chat_template; bos <|begin_of_text|>, eos <|eot_id|>.
  llama31_chat_template.jinja         that chat template on its own (byte for byte).
  reference.json                      rotary inv_freq, logits/hidden states of ~6 prompts, a left-padded
                                      batch, chat-template renders and tokenizer cases (see main()).

The model files are written by hand in Meta's format (transformers 5 would write `rope_parameters`
instead of `rope_theta`/`rope_scaling`, put the chat template into chat_template.jinja, and so on),
then loaded back with AutoTokenizer / AutoModelForCausalLM, and every reference value is computed
from what transformers loaded, so the fixture also proves transformers reads these files as meant.

Where the chat template comes from: the HF hub is unreachable here, so the template is taken from
the llama-cpp-python sdist on PyPI, which vendors llama.cpp's
models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja (written verbatim by llama.cpp's
scripts/get_chat_template.py from the hub's tokenizer_config.json). The script downloads that sdist
with pip (--no-binary for that one package only, so its build backend's dependencies come as wheels)
and checks both the sdist's and the template's sha256 (TEMPLATE_* constants). Set
LLAMA_CPP_PYTHON_SDIST=/path/to/llama_cpp_python-0.3.36.tar.gz to use an already downloaded copy.
Licence: the template is part of Llama 3.1 and falls under the Llama 3.1 Community License.

Run with the venv from scripts/reference/setup-venv.sh (needs PyPI access for the template):
    scripts/reference/.venv/bin/python scripts/reference/llama_fixture.py
"""

import os

# Never reach for the HF hub: everything is built here or read from the local directory.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors  # noqa: E402
from tokenizers import trainers  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "services" / "models" / "tests" / "fixtures" / "llama"
MODEL_DIR = OUT_DIR / "tiny-llama31"
GENERATOR = "scripts/reference/llama_fixture.py"
SEED = 20240723  # Llama 3.1's release date

# --- the official Llama-3.1-8B-Instruct chat template, from the llama-cpp-python sdist ---
TEMPLATE_PACKAGE = "llama-cpp-python==0.3.36"
TEMPLATE_SDIST_NAME = "llama_cpp_python-0.3.36.tar.gz"
TEMPLATE_SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
TEMPLATE_MEMBER = (
    "llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja"
)
TEMPLATE_SHA256 = "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65"

# --- tokenizer ---
# Llama 3's pre-tokenizer regex, exactly as in Meta's tokenizer.json.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BPE_VOCAB_SIZE = 420  # 256 byte symbols + 164 merges; the special tokens come on top
SPECIAL_TOKENS = [  # Llama 3.1's first 11 special tokens, in its order (ids 128000..128010 there)
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
]
BOS, END_OF_TEXT, PAD, EOM, EOT = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|finetune_right_pad_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
)

# Fixed training corpus: plain English about search and libraries, plus digits, punctuation,
# newlines and a little code, so that merges cover " the", "ing", "yes", digits and "\n\n".
CORPUS = [
    "The library opens at nine in the morning and closes at six in the evening. Readers who arrive "
    "early can wait in the reading room, where the newspapers are laid out on the long oak tables. "
    "The librarian keeps a list of the books that were returned late, and she reminds the readers "
    "politely when they come back.",
    "A search engine takes a query and returns the documents that are most relevant to it. First it "
    "retrieves a few hundred candidates with a fast index, then it ranks them again with a slower "
    "model that reads the query and the document together. The second step is called reranking, "
    "and it often decides which result the user sees first.",
    "Is the document relevant to the query? Answer yes or no. Yes, the document answers the "
    "question. No, the document is about something else. yes no Yes No YES NO yes. no. Yes! No!",
    "The river runs through the old town, past the market square and the stone bridge. In the "
    "summer the children swim near the mill, and in the winter the water freezes along the banks. "
    "Fishermen say that the best time to catch trout is just after the rain.",
    "Question: What is the capital of France?\nAnswer: Paris.\n\nQuestion: How many days are in a "
    "week?\nAnswer: Seven.\n\nQuestion: Which planet is known as the red planet?\nAnswer: Mars.",
    "Order 12345 was shipped on 2024-07-23 at 09:41. It weighs 2.5 kg, costs $19.99 (or 18,49 EUR) "
    "and should arrive within 3-5 days. Call 555-0100 or write to help@example.com; ref #A-42, 100% "
    "sure. 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 32 64 128 256 512 1024 2048 4096 8192.",
    "def score(query, document):\n    words = set(query.lower().split())\n    return sum(1 for w in "
    "document.split() if w in words)\n\nprint(score('the river', 'The river runs'))  # 2",
    "Punctuation matters: commas, periods. Semicolons; colons: dashes - and -- em dashes; (round "
    "brackets), [square brackets], {braces}, <angle brackets>, \"double quotes\", 'single quotes', "
    "question marks? exclamation marks! ellipses... slashes / and backslashes \\ and pipes |.",
    "We'll see what they've done; I'm sure it's fine, and you're right that we'd know if they'd "
    "failed. Don't worry: the team's work isn't finished, but it'll be ready soon.",
]

# --- model ---
HIDDEN = 64
INTERMEDIATE = 128
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 16
ROPE_THETA = 500000.0
ROPE_SCALING = {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}
MAX_POSITIONS = 131072
RMS_EPS = 1e-5
WEIGHT_STD = 0.08  # linear and embedding weights ~ N(0, WEIGHT_STD^2) ...
QK_STD = 0.2  # ... except q_proj/k_proj: larger, so attention over ~400 keys is far from uniform
NORM_STD = 0.1  # RMSNorm weights ~ 1 + N(0, NORM_STD^2), so a missing norm weight shows up

# --- prompts ---
RANKING_SYSTEM = (
    "You are a search relevance judge. Given a query and a document, answer with a single word: "
    "yes if the document is relevant to the query, no otherwise."
)
RANKING_USER = (
    "Query: when does the library open?\n"
    "Document: The library opens at nine in the morning and closes at six in the evening.\n"
    "Is the document relevant to the query? Answer yes or no."
)
LONG_TEXT = (
    "The river runs through the old town, past the market square and the stone bridge, where the "
    "fishermen wait in the morning for the first trout of the day. A search engine takes a query and "
    "returns the documents that are most relevant to it; first it retrieves a few hundred candidates "
    "with a fast index, then it ranks them again with a slower model that reads the query and the "
    "document together. The library opens at nine in the morning and closes at six in the evening, "
    "and readers who arrive early can wait in the reading room, where the newspapers are laid out on "
    "the long oak tables. In the summer the children swim near the mill, and in the winter the water "
    "freezes along the banks. Order 12345 was shipped on 2024-07-23 and should arrive within 3-5 days. "
    "Is the document relevant to the query? Answer yes or no. Yes, the document answers the question."
)
LONG_MIN_TOKENS, LONG_MAX_TOKENS = 250, 400
UNICODE_TEXT = "Café naïve résumé Ångström — 東京の図書館 北京 🚀🎉 ñandú"
DIGITS_TEXT = "Order #12345: 2.5 kg @ $19.99 (-3%) -> 2024-07-23, 09:41; 1,000,000!? [ok] {x: 7}"

TOKENIZE_CASES = [
    "yes",
    " yes",
    "Yes",
    "no",
    " no",
    "No",
    "12345",
    "3.14159 and 1000000",
    "Hello\n\nworld\n",
    "  two leading spaces, trailing tab\t",
    "東京の図書館 🚀",
    "<|begin_of_text|>Hi<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nIs it relevant?<|eot_id|>",
    "We'll see; they've said it's fine.",
]

CHAT_CASES = [
    ("user only", [{"role": "user", "content": "Is the sky blue?"}], True),
    (
        "system + user",
        [{"role": "system", "content": RANKING_SYSTEM}, {"role": "user", "content": RANKING_USER}],
        True,
    ),
    (
        "system + user + assistant + user",
        [
            {"role": "system", "content": "Answer yes or no."},
            {"role": "user", "content": "Is Paris in France?"},
            {"role": "assistant", "content": "yes"},
            {"role": "user", "content": "Is Mars a moon?"},
        ],
        True,
    ),
    (
        "whitespace is trimmed",
        [
            {"role": "system", "content": "\n  Be brief.  \n"},
            {"role": "user", "content": "  \n\tQuery: a b\n\nDocument: c d\n \n"},
        ],
        True,
    ),
    (
        "no generation prompt",
        [{"role": "user", "content": "Is the sky blue?"}, {"role": "assistant", "content": "yes"}],
        False,
    ),
]

BATCH_CASES = ["short sentence", "digits and punctuation", "ranking chat prompt"]
BATCH_TOLERANCE = 1e-4  # max |padded - unpadded| / max |unpadded| per row


# ----------------------------------------------------------------------------------------------
# JSON output: exact float32 values in their shortest round-trip form, one line per float list.


def fmt_float(x) -> str:
    v = np.float32(x)
    if not np.isfinite(v):
        raise ValueError(f"non-finite value {v}")
    s = str(v)  # numpy: shortest string that round-trips to the same float32, e.g. 0.1, 1e-05
    return "0.0" if s == "-0.0" else s


class Floats:
    """A list of floats to be written on one line."""

    def __init__(self, values):
        if isinstance(values, torch.Tensor):
            values = values.detach().to(torch.float32).numpy()
        self.values = np.asarray(values, dtype=np.float32).reshape(-1)


def to_json(obj, indent=0) -> str:
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if isinstance(obj, Floats):
        return "[" + ", ".join(fmt_float(v) for v in obj.values) + "]"
    if isinstance(obj, np.float32):
        return fmt_float(obj)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {to_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        scalars = all(isinstance(v, (int, float, str, bool)) or v is None for v in obj)
        if scalars and not any(isinstance(v, str) and len(v) > 40 for v in obj):
            return json.dumps(obj, ensure_ascii=False)  # short scalar lists on one line
        if not obj:
            return "[]"
        items = [f"{inner}{to_json(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json_file(path: Path, obj) -> None:
    """Plain JSON (for the HF config files), 2-space indent, keys in the given order."""
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Chat template


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_chat_template() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        sdist = os.environ.get("LLAMA_CPP_PYTHON_SDIST")
        if sdist:
            sdist_path = Path(sdist)
        else:
            print(f"downloading the {TEMPLATE_PACKAGE} sdist (~77 MB) for its chat template ...")
            cmd = [
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--disable-pip-version-check", "--no-binary", "llama-cpp-python",
                "-d", tmp, TEMPLATE_PACKAGE,
            ]  # fmt: skip
            subprocess.run(cmd, check=True)
            sdist_path = Path(tmp) / TEMPLATE_SDIST_NAME
        got = sha256_file(sdist_path)
        if got != TEMPLATE_SDIST_SHA256:
            raise SystemExit(f"error: sha256 of {sdist_path} is {got}, expected {TEMPLATE_SDIST_SHA256}")
        with tarfile.open(sdist_path, "r:gz") as tar:
            data = tar.extractfile(TEMPLATE_MEMBER).read()
    got = hashlib.sha256(data).hexdigest()
    if got != TEMPLATE_SHA256:
        raise SystemExit(f"error: sha256 of the chat template is {got}, expected {TEMPLATE_SHA256}")
    template = data.decode("utf-8")
    for needle in ("Cutting Knowledge Date: December 2023", '"26 Jul 2024"', "<|python_tag|>"):
        assert needle in template, needle
    return template


# ----------------------------------------------------------------------------------------------
# Tokenizer


def train_bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=True))  # Meta's tokenizer.json has ignore_merges: true
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
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
    bos_id = tok.token_to_id(BOS)
    assert bos_id == BPE_VOCAB_SIZE, bos_id
    # As in Meta's tokenizer.json: ByteLevel (offsets only) then TemplateProcessing adding BOS.
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single=f"{BOS}:0 $A:0",
                pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
                special_tokens=[(BOS, bos_id)],
            ),
        ]
    )
    return tok


# ----------------------------------------------------------------------------------------------
# Model files


def write_model_dir(tok: Tokenizer, template: str) -> dict:
    if MODEL_DIR.exists():
        shutil.rmtree(MODEL_DIR)
    MODEL_DIR.mkdir(parents=True)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    vocab_size = tok.get_vocab_size()
    eos_ids = [ids[END_OF_TEXT], ids[EOM], ids[EOT]]  # as Llama-3.1-8B-Instruct's config.json

    tok.save(str(MODEL_DIR / "tokenizer.json"), pretty=True)

    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": ids[BOS],
        "eos_token_id": eos_ids,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": MAX_POSITIONS,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "pretraining_tp": 1,
        "rms_norm_eps": RMS_EPS,
        "rope_scaling": ROPE_SCALING,
        "rope_theta": ROPE_THETA,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    write_json_file(MODEL_DIR / "config.json", config)
    write_json_file(
        MODEL_DIR / "generation_config.json",
        {"bos_token_id": ids[BOS], "do_sample": True, "eos_token_id": eos_ids, "temperature": 0.6, "top_p": 0.9},
    )

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
    write_json_file(
        MODEL_DIR / "tokenizer_config.json",
        {
            "added_tokens_decoder": added,
            "bos_token": BOS,
            "chat_template": template,
            "clean_up_tokenization_spaces": True,
            "eos_token": EOT,
            "model_input_names": ["input_ids", "attention_mask"],
            "model_max_length": MAX_POSITIONS,
            "tokenizer_class": "PreTrainedTokenizerFast",
        },
    )
    spec = {"content": None, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    write_json_file(
        MODEL_DIR / "special_tokens_map.json",
        {"bos_token": {**spec, "content": BOS}, "eos_token": {**spec, "content": EOT}},
    )
    return {"ids": ids, "vocab_size": vocab_size, "eos_ids": eos_ids}


def init_weights(model: torch.nn.Module) -> dict:
    """Seeded weights: every tensor drawn in name order from one generator (independent of how
    transformers itself initialises)."""
    gen = torch.Generator().manual_seed(SEED)
    tensors = {}
    for name, param in sorted(model.state_dict().items()):
        noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
        if name.endswith("norm.weight"):
            value = 1.0 + NORM_STD * noise
        elif name.endswith(("q_proj.weight", "k_proj.weight")):
            value = QK_STD * noise
        else:
            value = WEIGHT_STD * noise
        tensors[name] = value.contiguous()
    return tensors


# ----------------------------------------------------------------------------------------------
# Reference computations


def llama3_inv_freq_f64() -> np.ndarray:
    """Meta's apply_scaling (llama-models), in float64, as an independent check of HF's float32."""
    base = ROPE_THETA ** (np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM)
    freqs = 1.0 / base
    s = ROPE_SCALING
    low_wavelen = s["original_max_position_embeddings"] / s["low_freq_factor"]
    high_wavelen = s["original_max_position_embeddings"] / s["high_freq_factor"]
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(f)
        elif wavelen > low_wavelen:
            out.append(f / s["factor"])
        else:
            smooth = (s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"]) / (
                s["high_freq_factor"] - s["low_freq_factor"]
            )
            out.append((1 - smooth) * f / s["factor"] + smooth * f)
    return np.array(out)


@torch.inference_mode()
def run_prompt(model, input_ids: list[int]) -> dict:
    # Hooks record the embedding output and every decoder layer's output (before the final norm):
    # transformers 5's output_hidden_states replaces the last layer's output with the normed one.
    captured = []

    def hook(_module, _inputs, output):
        captured.append((output[0] if isinstance(output, tuple) else output)[0, -1].clone())

    handles = [model.model.embed_tokens.register_forward_hook(hook)]
    handles += [layer.register_forward_hook(hook) for layer in model.model.layers]
    try:
        logits = model(input_ids=torch.tensor([input_ids])).logits[0]
    finally:
        for h in handles:
            h.remove()
    assert len(captured) == 1 + LAYERS, len(captured)
    final_hidden = model.model(input_ids=torch.tensor([input_ids])).last_hidden_state[0]
    n = len(input_ids)
    probes = sorted({0, min(1, n - 1), n // 2})
    return {
        "last_logits": logits[-1],
        "probe_positions": probes,
        "probe_logits": [logits[p] for p in probes],
        "final_hidden_last": final_hidden[-1],
        "layer_outputs_last": captured,
        "logits_all": logits,
    }


def main() -> int:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    template = load_chat_template()
    tok = build_tokenizer()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "llama31_chat_template.jinja").write_bytes(template.encode("utf-8"))
    info = write_model_dir(tok, template)
    ids = info["ids"]

    # Weights: build the architecture from the config.json just written, fill it, save.
    config = transformers.AutoConfig.from_pretrained(str(MODEL_DIR), local_files_only=True)
    assert config.rope_parameters["rope_type"] == "llama3", config.rope_parameters
    assert config.rope_parameters["rope_theta"] == ROPE_THETA, config.rope_parameters
    skeleton = transformers.LlamaForCausalLM(config)
    tensors = init_weights(skeleton)
    save_file(tensors, str(MODEL_DIR / "model.safetensors"), metadata={"format": "pt"})
    del skeleton

    # Everything below uses what transformers loads back from the directory.
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(MODEL_DIR), local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(MODEL_DIR), local_files_only=True, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    loaded = model.state_dict()
    for name, value in load_file(str(MODEL_DIR / "model.safetensors")).items():
        assert torch.equal(loaded[name], value), name
    assert set(loaded) == set(tensors), set(loaded) ^ set(tensors)
    raw_tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    assert len(hf_tok) == info["vocab_size"], (len(hf_tok), info["vocab_size"])
    assert hf_tok.bos_token == BOS and hf_tok.eos_token == EOT
    assert hf_tok.chat_template == template

    def hf_ids(text: str, add_special_tokens: bool) -> list[int]:
        got = hf_tok(text, add_special_tokens=add_special_tokens)["input_ids"]
        raw = raw_tok.encode(text, add_special_tokens=add_special_tokens).ids
        assert got == raw, (text, got, raw)  # transformers must not re-interpret tokenizer.json
        return got

    # RoPE
    rotary = model.model.rotary_emb
    inv_freq = rotary.inv_freq.float()
    ref64 = llama3_inv_freq_f64()
    inv_freq_rel = float(np.max(np.abs(inv_freq.numpy().astype(np.float64) - ref64) / ref64))
    assert inv_freq_rel < 1e-6, inv_freq_rel

    # Prompts
    ranking_messages = [
        {"role": "system", "content": RANKING_SYSTEM},
        {"role": "user", "content": RANKING_USER},
    ]
    ranking_rendered = hf_tok.apply_chat_template(ranking_messages, tokenize=False, add_generation_prompt=True)
    assert ranking_rendered.startswith(BOS)
    prompt_specs = [
        ("short sentence", "The library opens at nine in the morning.", True),
        ("ranking chat prompt", ranking_rendered, False),  # already starts with <|begin_of_text|>
        ("unicode", UNICODE_TEXT, True),
        ("digits and punctuation", DIGITS_TEXT, True),
        ("long text", LONG_TEXT, True),
        ("single token", "", True),  # just <|begin_of_text|>
    ]
    prompts = []
    runs = {}
    for name, text, add_special in prompt_specs:
        input_ids = hf_ids(text, add_special)
        assert input_ids[0] == ids[BOS] and input_ids.count(ids[BOS]) == 1, (name, input_ids[:3])
        if name == "long text":
            assert LONG_MIN_TOKENS <= len(input_ids) <= LONG_MAX_TOKENS, len(input_ids)
        if name == "single token":
            assert len(input_ids) == 1
        run = run_prompt(model, input_ids)
        runs[name] = (input_ids, run)
        logits = run["logits_all"]
        probs = torch.softmax(run["last_logits"], -1)
        print(
            f"{name:24s} {len(input_ids):4d} tokens  last logits std {float(run['last_logits'].std()):.3f} "
            f"range [{float(logits.min()):.2f}, {float(logits.max()):.2f}]  max prob {float(probs.max()):.4f}"
        )
        prompts.append(
            {
                "name": name,
                "text": text,
                "add_special_tokens": add_special,
                "input_ids": input_ids,
                "last_logits": Floats(run["last_logits"]),
                "probe_positions": run["probe_positions"],
                "probe_logits": [Floats(p) for p in run["probe_logits"]],
                "final_hidden_last": Floats(run["final_hidden_last"]),
                "layer_outputs_last": [Floats(h) for h in run["layer_outputs_last"]],
            }
        )

    # Attention must not be uniform: check the attention weights of the long prompt.
    with torch.inference_mode():
        long_ids = torch.tensor([runs["long text"][0]])
        attn = model(input_ids=long_ids, output_attentions=True).attentions
    n = long_ids.shape[1]
    last_row = attn[-1][0, :, -1, :]  # [heads, keys]
    entropy = float(-(last_row * last_row.clamp_min(1e-30).log()).sum(-1).mean())
    print(f"attention entropy at the last long-text position: {entropy:.3f} (uniform: {math.log(n):.3f})")
    assert entropy < 0.9 * math.log(n), entropy

    # Left-padded batch
    pad_id = ids[PAD]
    rows = [runs[name][0] for name in BATCH_CASES]
    assert len({len(r) for r in rows}) == len(rows), "batch rows need different lengths"
    width = max(len(r) for r in rows)
    batch_ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.inference_mode():
        batch_logits = model(input_ids=batch_ids, attention_mask=mask, position_ids=position_ids).logits
    batch_last = batch_logits[:, -1, :]
    max_abs, max_rel = 0.0, 0.0
    for i, name in enumerate(BATCH_CASES):
        ref = runs[name][1]["last_logits"]
        diff = float((batch_last[i] - ref).abs().max())
        rel = diff / float(ref.abs().max())
        max_abs, max_rel = max(max_abs, diff), max(max_rel, rel)
        assert rel <= BATCH_TOLERANCE, (name, rel)
    print(f"batch: {len(rows)} rows, width {width}, max |padded - unpadded| {max_abs:.2e} (rel {max_rel:.2e})")
    batch = {
        "names": BATCH_CASES,
        "padding_side": "left",
        "pad_token": PAD,
        "pad_token_id": pad_id,
        "input_ids": batch_ids.tolist(),
        "attention_mask": mask.tolist(),
        "position_ids": position_ids.tolist(),
        "last_logits": [Floats(row) for row in batch_last],
        "max_abs_diff_vs_unpadded": max_abs,
        "max_rel_diff_vs_unpadded": max_rel,
    }

    # Chat template renders
    chat_cases = []
    for name, messages, add_gen in CHAT_CASES:
        rendered = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_gen)
        chat_cases.append(
            {
                "name": name,
                "messages": messages,
                "add_generation_prompt": add_gen,
                "rendered": rendered,
                "input_ids": hf_ids(rendered, False),
            }
        )
    assert chat_cases[1]["rendered"] == ranking_rendered

    # Tokenizer cases
    tokenize_cases = []
    for text in TOKENIZE_CASES:
        case_ids = hf_ids(text, False)
        decoded = hf_tok.decode(case_ids)
        assert decoded == raw_tok.decode(case_ids, skip_special_tokens=False), text
        tokenize_cases.append(
            {
                "text": text,
                "ids": case_ids,
                "tokens": hf_tok.convert_ids_to_tokens(case_ids),
                "ids_with_special_tokens": hf_ids(text, True),
                "decoded": decoded,
                "decoded_skip_special": hf_tok.decode(case_ids, skip_special_tokens=True),
            }
        )

    reference = {
        "generator": GENERATOR,
        "description": "tiny random Llama-3.1-style model in tiny-llama31/; float32 outputs of HF "
        "transformers (eager attention, CPU). Floats are exact float32 values in shortest form.",
        "fields": {
            "prompts": "input_ids as HF tokenizes `text` (add_special_tokens as given; the chat prompt "
            "already starts with <|begin_of_text|>); last_logits = logits at the last position; "
            "probe_logits[i] = logits at probe_positions[i]; final_hidden_last = output of the final "
            "RMSNorm at the last position; layer_outputs_last = [embedding, decoder layer 0, decoder "
            "layer 1] outputs at the last position, before the final norm",
            "batch": "left-padded rows of the named prompts; position_ids = cumsum(attention_mask) - 1, "
            "clamped at 0; last_logits computed with that mask and those positions",
            "chat_cases": "tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt); "
            "input_ids = the rendered string tokenized with add_special_tokens=False",
            "tokenize_cases": "ids/tokens with add_special_tokens=False (special tokens in the text are "
            "still matched); ids_with_special_tokens adds the post-processor's BOS",
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "seed": SEED,
        "chat_template_source": {
            "package": TEMPLATE_PACKAGE,
            "sdist_sha256": TEMPLATE_SDIST_SHA256,
            "path": TEMPLATE_MEMBER,
            "sha256": TEMPLATE_SHA256,
        },
        "vocab_size": info["vocab_size"],
        "special_token_ids": ids,
        "bos_token_id": ids[BOS],
        "eos_token_ids": info["eos_ids"],
        "pad_token_id": pad_id,
        "rope": {
            "rope_theta": ROPE_THETA,
            "rope_scaling": ROPE_SCALING,
            "head_dim": HEAD_DIM,
            "inv_freq": Floats(inv_freq),
            "inv_freq_f64_meta_reference": [float(x) for x in ref64],
            "attention_scaling": float(rotary.attention_scaling),
            "note": "inv_freq as transformers computes it in float32 (modeling_rope_utils."
            "_compute_llama3_parameters); cos/sin = cos/sin(position * inv_freq) for each of the "
            "head_dim/2 frequencies, repeated twice (rotate_half layout), times attention_scaling.",
        },
        "prompts": prompts,
        "batch": batch,
        "chat_cases": chat_cases,
        "tokenize_cases": tokenize_cases,
    }
    out = to_json(reference) + "\n"
    parsed = json.loads(out)
    for p, orig in zip(parsed["prompts"], prompts):
        assert np.array_equal(np.float32(p["last_logits"]), np.float32(orig["last_logits"].values))
    out_path = OUT_DIR / "reference.json"
    out_path.write_text(out, encoding="utf-8")

    total = 0
    for path in sorted(OUT_DIR.rglob("*")):
        if path.is_file():
            size = path.stat().st_size
            total += size
            print(f"  {path.relative_to(ROOT)}  {size} bytes")
    print(f"wrote {OUT_DIR.relative_to(ROOT)}: {total} bytes in all")
    assert total < 1_500_000, total
    return 0


if __name__ == "__main__":
    sys.exit(main())
