#!/usr/bin/env python3
"""Makes the real-like vectors of `folio bench ann`: all-MiniLM-L6-v2 embeddings (384-d, mean
pooled over the attention mask, L2-normalised, float32) of distinct texts cut from the
BEIR SciFact corpus (5,183 abstracts): 110,821 texts.

The texts, each kept once (exact duplicates dropped) and at least 20 characters long, in this
order before the shuffle:
  * every title: 5,165,
  * every sentence of every abstract (split after . ! ? before an upper-case letter, a digit or
    an opening bracket): 44,745 more,
  * every clause of those sentences (a sentence split after , ; or : followed by white space;
    a sentence without such a split is its own clause and is not repeated): 60,911 more.
Titles and sentences alone give 49,910 texts; windows of 2-3 sentences would be slower to embed
(75-112 tokens on average against 21 for a clause), so clauses fill the set past 100k.
They are shuffled with a fixed seed (random.Random(20240611)), so the last rows, which the bench
holds out as queries, are a random sample of the same distribution and not one kind of text.

Output (row-major little-endian float32, no header) and a side file with one text per line (the
text of row i on line i):
    target/ann-bench/scifact-minilm-384.f32
    target/ann-bench/scifact-minilm-384.txt

Runs on CPU with plain transformers (the same model and pooling that
scripts/reference/minilm_fixture.py checks against sentence-transformers), texts sorted by length
and encoded in batches of 128, truncated at 256 tokens (the model's max_seq_length). Run it in the
reference venv (scripts/reference/setup-venv.sh):
    scripts/reference/.venv/bin/python scripts/bench/ann_vectors.py [--threads 2] [--limit N]
On the 2-core development machine (AMD EPYC, AVX-512) it took 29.5 minutes of embedding
(1,772 s, 62.5 texts/s; about 30 s more to load and to write), with other builds sharing the
machine for the first 20 minutes; the JSON report printed at the end gives the numbers.
"""

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "all-MiniLM-L6-v2"
CORPUS = Path("/work/shared/data/beir-scifact/corpus.jsonl")
OUT = ROOT / "target" / "ann-bench" / "scifact-minilm-384"
SEED = 20240611
MIN_CHARS = 20
SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
CLAUSE = re.compile(r"(?<=[,;:])\s+")


def texts(corpus: Path) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []

    def keep(t: str) -> None:
        t = " ".join(t.split())
        if len(t) >= MIN_CHARS and t not in seen:
            seen.add(t)
            out.append(t)

    docs = [json.loads(line) for line in corpus.open(encoding="utf-8") if line.strip()]
    for d in docs:
        keep(d.get("title", ""))
    sentences = [
        [s.strip() for s in SPLIT.split(d.get("text", "")) if len(s.strip()) >= MIN_CHARS]
        for d in docs
    ]
    for sents in sentences:
        for s in sents:
            keep(s)
    for sents in sentences:
        for s in sents:
            for clause in CLAUSE.split(s):
                keep(clause)
    random.Random(SEED).shuffle(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--model", type=Path, default=MODEL_DIR)
    p.add_argument("--out", type=Path, default=OUT, help="output path without extension")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit", type=int, default=0, help="embed only the first N texts (timing)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    all_texts = texts(args.corpus)
    if args.limit:
        all_texts = all_texts[: args.limit]
    n = len(all_texts)
    print(f"{n} texts from {args.corpus}", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model, dtype=torch.float32).eval()

    order = sorted(range(n), key=lambda i: len(all_texts[i]))
    vectors = np.zeros((n, 384), dtype=np.float32)
    started = time.time()
    done = 0
    with torch.inference_mode():
        for start in range(0, n, args.batch_size):
            chunk = order[start : start + args.batch_size]
            enc = tok([all_texts[i] for i in chunk], padding=True, truncation=True, max_length=256,
                      return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            vectors[chunk] = pooled.numpy()
            done += len(chunk)
            if (start // args.batch_size) % 50 == 0:
                el = time.time() - started
                print(f"  {done}/{n} texts, {el:.0f} s, {done / el:.1f} texts/s", file=sys.stderr)
    elapsed = time.time() - started

    args.out.parent.mkdir(parents=True, exist_ok=True)
    vectors.astype("<f4").tofile(str(args.out) + ".f32")
    with open(str(args.out) + ".txt", "w", encoding="utf-8") as f:
        for t in all_texts:
            f.write(t.replace("\n", " ") + "\n")
    print(json.dumps({"texts": n, "dim": 384, "seconds": round(elapsed, 1),
                      "texts_per_s": round(n / elapsed, 1), "threads": args.threads,
                      "out": str(args.out) + ".f32"}))


if __name__ == "__main__":
    main()
