#!/usr/bin/env python3
"""Generates services/models/tests/fixtures/minilm_reference.json, the reference embeddings of
sentence-transformers/all-MiniLM-L6-v2 that Folio's own embedder is checked against.

Loads the local model directory models/all-MiniLM-L6-v2 (scripts/fetch-default-model.sh) with
sentence-transformers on CPU, offline, in float32, and encodes a fixed set of varied texts one at
a time (batch size 1, so no padding is involved) with mean pooling and L2 normalisation. For each
text it records the token count after truncation (including [CLS] and [SEP]) and the 384-d
embedding rounded to 7 decimals. As a cross-check it recomputes every embedding with plain
transformers (AutoModel + masked mean pooling + L2 norm) and fails if the two disagree.

Run with the venv from scripts/reference/setup-venv.sh:
    scripts/reference/.venv/bin/python scripts/reference/minilm_fixture.py
"""

import os

# Never reach for the HF hub: everything comes from the local model directory.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "all-MiniLM-L6-v2"
OUT_PATH = ROOT / "services" / "models" / "tests" / "fixtures" / "minilm_reference.json"
GENERATOR = "scripts/reference/minilm_fixture.py"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
EXPECTED_MAX_SEQ_LENGTH = 256
EXPECTED_DIM = 384
DECIMALS = 7
# Largest tolerated difference between the sentence-transformers and the plain-transformers
# embedding of one text (both float32 on CPU; they should agree to rounding noise).
CROSS_CHECK_TOLERANCE = 1e-5

LONG_TEXT = (
    "The municipal archive kept its oldest registers in a cold room under the town hall, where "
    "the shelves were labelled by decade rather than by subject, so that anyone looking for a "
    "land deed from the eighteen-forties had to know roughly when the sale took place before "
    "they could even begin. Over the years the archivists compiled card indexes, then typed "
    "ledgers, and finally a spreadsheet that nobody fully trusted, because every migration had "
    "dropped a few rows and silently merged others. When the council finally funded a proper "
    "digitisation project, the first surprise was how little of the material was actually "
    "legible to a scanner: faded iron-gall ink, marginal notes written sideways, pages glued "
    "together by damp, and maps folded so many times that the creases had become tears. The "
    "team photographed everything twice, once under diffuse light and once under raking light, "
    "and transcribed the handwriting in pairs, with a third person settling disagreements. "
    "Names were the hardest part. The same family might appear as Schmidt, Smith, Smyth and "
    "Schmitt within a single generation, depending on which clerk was on duty and how well he "
    "heard. Place names drifted too, as farms were split, renamed after new owners, or absorbed "
    "into neighbouring parishes. In the end the project produced not a single authoritative "
    "catalogue but a web of linked records, each one citing the page it came from, so that a "
    "reader could always go back to the original image and judge the transcription for "
    "themselves. Researchers who had spent decades in the cold room said it changed how they "
    "worked: questions that once took a season of visits could now be answered in an afternoon, "
    "and the questions themselves became more ambitious as a result."
)

TEXTS = [
    "Hello world.",
    "archive",
    "The quick brown fox jumps over the lazy dog.",
    "How do I renew a library card that expired last month?",
    LONG_TEXT,
    "Wait... what?! No -- really?? (Yes; really.) [citation needed] {sic} <ok> #tag @user 100%!!!",
    "The parcel weighs 2.5 kg, measures 30 x 20 x 15 cm and ships for $12.99 (or 11,49 EUR) "
    "within 3-5 days; at 21.7 °C it stays below 65% humidity.",
    "Le café de la gare ouvre à sept heures ; les élèves préfèrent la crème brûlée à l'été.",
    "Die Bürgermeisterin schließt das Rathaus um 18 Uhr, weil die Straßenbahn nicht fährt.",
    "東京の図書館は午前九時に開館します。",
    "北京大学图书馆收藏了大量古籍和手稿。",
    "서울의 도서관은 주말에도 문을 엽니다.",
    "Launch day! 🚀🎉 Coffee ☕ first, then code 💻 — see you at 9 👋",
    "tHiS iS mIxEd CaSe TeXt WiTh SOME SHOUTING and some whispering",
    "| id | year | count | mean | stddev |\n| 17 | 2019 | 4096 | 3.14159 | 0.0271 |\n"
    "| 18 | 2020 | 8192 | 2.71828 | 0.1414 |",
    "Docs live at https://example.org/docs/v2/index.html?lang=en&page=3#install and mirrors at "
    "http://mirror.example.net/pub/folio/.",
    "   padded with leading and trailing whitespace\t \n",
    "Ünïcödé façade naïve coöperate résumé Ångström",
    "Why is the sky blue? Rayleigh scattering: intensity ∝ 1/λ⁴, so shorter wavelengths scatter "
    "more.",
    "def add(a, b):\n    return a + b  # trivial Python function",
    "?",
]


def format_float(x: float) -> str:
    """Fixed-point with at most DECIMALS decimals, trailing zeros dropped (keeps the file small)."""
    s = f"{x:.{DECIMALS}f}".rstrip("0")
    if s.endswith("."):
        s += "0"
    return "0.0" if s == "-0.0" else s


def plain_transformers_embedding(hf_model, tokenizer, text: str, max_len: int) -> torch.Tensor:
    """Independent recomputation: masked mean pooling over the last hidden state, then L2 norm."""
    enc = tokenizer([text], truncation=True, max_length=max_len, return_tensors="pt")
    with torch.inference_mode():
        hidden = hf_model(**enc).last_hidden_state  # [1, T, 384]
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)[0]


def main() -> int:
    if not (MODEL_DIR / "model.safetensors").is_file():
        print(f"error: {MODEL_DIR} is missing; run scripts/fetch-default-model.sh", file=sys.stderr)
        return 1

    # One thread: the reference does not depend on the machine's core count.
    torch.set_num_threads(1)
    transformers.logging.disable_progress_bar()

    model = SentenceTransformer(
        str(MODEL_DIR),
        device="cpu",
        local_files_only=True,
        model_kwargs={"dtype": torch.float32},
    )
    model = model.float().eval()
    dtypes = {p.dtype for p in model.parameters()}
    assert dtypes == {torch.float32}, f"expected float32 weights, got {dtypes}"

    max_seq_length = model.max_seq_length
    print(f"max_seq_length reported by the model: {max_seq_length}")
    if max_seq_length != EXPECTED_MAX_SEQ_LENGTH:
        print(f"error: expected max_seq_length {EXPECTED_MAX_SEQ_LENGTH}", file=sys.stderr)
        return 1

    tokenizer = model.tokenizer
    hf_model = transformers.AutoModel.from_pretrained(
        str(MODEL_DIR), local_files_only=True, dtype=torch.float32
    ).eval()

    items = []
    worst_diff = 0.0
    for text in TEXTS:
        features = model.preprocess([text])
        num_tokens = int(features["attention_mask"].sum())
        full_tokens = len(tokenizer(text, truncation=False, verbose=False)["input_ids"])

        emb = model.encode(
            [text],
            batch_size=1,
            normalize_embeddings=True,
            convert_to_tensor=True,
            show_progress_bar=False,
        )[0].float()
        assert emb.shape == (EXPECTED_DIM,), emb.shape
        assert abs(float(emb.norm()) - 1.0) < 1e-5, float(emb.norm())

        check = plain_transformers_embedding(hf_model, tokenizer, text, max_seq_length)
        diff = float((emb - check).abs().max())
        worst_diff = max(worst_diff, diff)
        if diff > CROSS_CHECK_TOLERANCE:
            print(f"error: cross-check differs by {diff:.2e} for {text[:40]!r}", file=sys.stderr)
            return 1

        items.append({"text": text, "num_tokens": num_tokens, "embedding": emb.tolist()})
        shown = text.strip().replace("\n", " ")[:48]
        print(f"{num_tokens:4d} tokens (untruncated {full_tokens:4d})  {shown!r}")

    longest = max(item["num_tokens"] for item in items)
    if longest != max_seq_length:
        print(f"error: no text reaches the {max_seq_length}-token truncation", file=sys.stderr)
        return 1

    header = {
        "model": MODEL_ID,
        "generator": GENERATOR,
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        },
        "max_seq_length": max_seq_length,
        "normalize": True,
    }
    # Hand-assembled JSON: readable header, one line per embedding.
    lines = ["{"]
    for key, value in header.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
    lines.append('  "items": [')
    for i, item in enumerate(items):
        emb_text = ", ".join(format_float(x) for x in item["embedding"])
        lines.append("    {")
        lines.append(f'      "text": {json.dumps(item["text"], ensure_ascii=False)},')
        lines.append(f'      "num_tokens": {item["num_tokens"]},')
        lines.append(f'      "embedding": [{emb_text}]')
        lines.append("    }" + ("," if i + 1 < len(items) else ""))
    lines.append("  ]")
    lines.append("}")
    out = "\n".join(lines) + "\n"

    # The file must be valid JSON that round-trips to the same numbers.
    parsed = json.loads(out)
    assert len(parsed["items"]) == len(TEXTS)
    for item, orig in zip(parsed["items"], items):
        assert item["text"] == orig["text"]
        assert len(item["embedding"]) == EXPECTED_DIM
        assert max(abs(a - b) for a, b in zip(item["embedding"], orig["embedding"])) < 1e-7

    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    OUT_PATH.write_text(out, encoding="utf-8")
    print(
        f"wrote {OUT_PATH.relative_to(ROOT)}: {len(items)} items, {len(out.encode('utf-8'))} bytes, "
        f"longest {longest} tokens, worst cross-check diff {worst_diff:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
