#!/usr/bin/env bash
# Builds the index that `folio bench serve` is measured on: about 100k text passages from a real
# corpus, routes bm25 + dense (all-MiniLM-L6-v2), fused with RRF at query time, no re-ranker.
#
# The corpus is BEIR SciFact (../shared/data/beir-scifact: 5,183 abstracts, 1.1M words). Its
# abstracts alone make only 5,183 passages, so each abstract (title and text as one run of words)
# is cut into overlapping windows of WINDOW words every STRIDE words (an abstract shorter than
# WINDOW is one passage). The defaults, 24 words every 11, give 97,371 passages of about one
# sentence each (SciFact's mean sentence is 25 words): ~100k passages of real text, the size the
# serving goal is stated for. Longer passages (e.g. WINDOW=64 STRIDE=8: 105,025 passages) make
# BM25's postings longer but take about three times as long to embed on a CPU. Each window
# becomes one BEIR document `<abstract id>-<n>`; the qrels are widened to every window of a
# judged abstract, so the evaluation that `folio eval retrieval` prints once it has indexed is a
# sanity check at passage level.
#
# Usage: scripts/bench/serve-corpus.sh OUT_DIR
#   env FOLIO   the folio binary (default: target/release/folio; `cargo build --release -p folio`)
#       SCIFACT the BEIR SciFact directory (default: ../shared/data/beir-scifact beside the repo)
#       WINDOW, STRIDE  passage length and step in words (default 24 and 11)
#       LIMIT   only the first LIMIT abstracts (a quick run; 10 or more include a judged one)
# Writes OUT_DIR/dataset (the windowed BEIR dataset), OUT_DIR/index (the Folio index),
# OUT_DIR/eval (the evaluation report) and OUT_DIR/queries.jsonl (SciFact's 1,109 claims, the
# load test's queries). Indexing embeds every passage on the CPU, one passage at a time: 70
# minutes (57 CPU-minutes) on a busy 2-core machine.
#
# Then (--query-cache 0: the 1,109 queries repeat during a run, and the server's query cache
# would answer the repeats without the embedder; leave it on to measure the cached path):
#   target/release/folio serve --index OUT_DIR/index --addr 127.0.0.1:8080 --query-cache 0 &
#   target/release/folio bench serve --url http://127.0.0.1:8080 --queries OUT_DIR/queries.jsonl \
#       --clients 16,64 --duration 30s --server-pid $! --json OUT_DIR/bench.json
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$1
folio=${FOLIO:-$repo/target/release/folio}
scifact=${SCIFACT:-$repo/../shared/data/beir-scifact}
window=${WINDOW:-24}
stride=${STRIDE:-11}
limit=${LIMIT:-0}

if [ ! -x "$folio" ]; then
  echo "no folio binary at $folio: run cargo build --release -p folio (or set FOLIO)" >&2
  exit 1
fi
for f in corpus.jsonl queries.jsonl qrels/test.tsv; do
  if [ ! -f "$scifact/$f" ]; then
    echo "$scifact/$f is missing: set SCIFACT to a BEIR SciFact directory" >&2
    exit 1
  fi
done

mkdir -p "$out/dataset/qrels"
python3 - "$scifact" "$out/dataset" "$window" "$stride" "$limit" <<'PY'
import json
import sys

src, dst, window, stride, limit = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
if window < 1 or stride < 1:
    sys.exit("WINDOW and STRIDE must be at least 1")
windows = {}
with open(f"{src}/corpus.jsonl", encoding="utf-8") as f, \
        open(f"{dst}/corpus.jsonl", "w", encoding="utf-8") as out:
    for n, line in enumerate(f):
        if limit and n >= limit:
            break
        doc = json.loads(line)
        words = f"{doc.get('title', '')} {doc.get('text', '')}".split()
        last = max(len(words) - window, 0)
        starts = list(range(0, last + 1, stride))
        if starts[-1] != last:
            starts.append(last)  # a last window that reaches the end of the abstract
        ids = []
        for i, start in enumerate(starts):
            pid = f"{doc['_id']}-{i}"
            ids.append(pid)
            text = " ".join(words[start:start + window])
            out.write(json.dumps({"_id": pid, "title": "", "text": text}) + "\n")
        windows[doc["_id"]] = ids
with open(f"{src}/qrels/test.tsv", encoding="utf-8") as f, \
        open(f"{dst}/qrels/test.tsv", "w", encoding="utf-8") as out:
    out.write("query-id\tcorpus-id\tscore\n")
    for line in f:
        cols = line.rstrip("\n").split("\t")
        if len(cols) < 3 or cols[0] == "query-id":
            continue
        for pid in windows.get(cols[1], []):
            out.write(f"{cols[0]}\t{pid}\t{cols[2]}\n")
passages = sum(len(v) for v in windows.values())
print(f"{len(windows)} abstracts -> {passages} passages "
      f"({window} words every {stride})", file=sys.stderr)
PY
cp "$scifact/queries.jsonl" "$out/dataset/queries.jsonl"
cp "$scifact/queries.jsonl" "$out/queries.jsonl"

# Indexes the passages (bm25 + dense) and evaluates the routes and their RRF fusion.
"$folio" eval retrieval --dataset "$out/dataset" --index "$out/index" --out "$out/eval" \
  --routes bm25,dense --fusion rrf --metric ndcg@10,recall@100
echo "passages: $(wc -l < "$out/dataset/corpus.jsonl"); index: $out/index"
