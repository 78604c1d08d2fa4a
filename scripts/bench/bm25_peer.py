"""Peer for `folio bench bm25 --peer <python>`: bm25s (BM25(method="lucene"), numpy backend) indexes
the same corpus and answers the same queries with the same k1, b and k. Prints one JSON object on
stdout; progress goes to stderr.

Inputs, written by Folio: --corpus and --queries, JSONL files with one {"id": str, "text": str}
object a line.

Text analysis, bm25s.tokenize(lower=True, stopwords=None, stemmer=...): the text is lower-cased
(str.lower), split with bm25s's token pattern r"(?u)\\b\\w\\w+\\b" (runs of Unicode word characters,
so letters, digits and "_", of two characters or more: one-character tokens are dropped, "_"
joins words, and there is no length cap), no stop word is removed, and with --stemmer english
every token goes through PyStemmer's Snowball English (Porter2) stemmer.

Scoring, bm25s's lucene variant (Kamphuis et al., ECIR 2020):
  idf   = ln(1 + (N - df + 0.5) / (df + 0.5)), as Lucene;
  score = sum over query tokens of idf * tf / (tf + k1 * (1 - b + b * dl / avgdl)),
that is Lucene's score divided by (k1 + 1): bm25s leaves that constant factor out, so rankings
are Lucene's and the scores reported here times (k1 + 1) are Lucene's. dl is a document's exact
token count after analysis (not quantised as Lucene's and tantivy's field norms are), avgdl the
mean of dl over all documents, empty ones too; scores are float32, precomputed per (document,
term) at index time.
A query token that occurs twice counts twice; tokens missing from the index are ignored. bm25s
pads the top k with documents scoring 0 (no query token in them): those are left out here.
Equal scores come in no set order (numpy argpartition).

Three query speeds are measured, each the best of --repeat timed passes after one untimed pass
(that of `qps` gives the results):
  qps          one query per call, one after another, on one thread: tokenise that one query, then
               retrieve its top k (n_threads=0), Python's per-call overhead included;
  qps_batch_1t all queries tokenised in one call and retrieved in one call with n_threads=0,
               bm25s's loop in the calling thread (n_threads=1 runs the same loop on a one-worker
               pool, a future per query: about 25% slower on SciFact);
  qps_batch    the same with n_threads=--threads, bm25s's thread pool (numpy holds the GIL much of
               the time).
build_s is tokenising the corpus plus indexing it, tokenize_s the tokenising alone. index_bytes is
the nbytes of the index's sparse matrix arrays (data, indices, indptr), not counting the
vocabulary dict. Run in the venv of scripts/bench/setup-bm25-venv.sh.
"""

import argparse
import json
import sys
import time
from typing import Any, Callable

try:
    import bm25s
    import Stemmer
except ImportError as e:  # a clear message for the Rust side to pass on
    sys.exit(f"{e}: create the venv with scripts/bench/setup-bm25-venv.sh and pass "
             "--peer scripts/bench/.venv-bm25/bin/python")


def read_jsonl(path: str) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                ids.append(row["id"])
                texts.append(row["text"])
    return ids, texts


def timed(run: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    """The result of one untimed call of `run`, and the best time of `repeat` more."""
    result = run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return result, min(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--k1", type=float, default=1.2)
    p.add_argument("--b", type=float, default=0.75)
    p.add_argument("--stemmer", choices=["english", "none"], default="english")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    doc_ids, doc_texts = read_jsonl(args.corpus)
    query_ids, query_texts = read_jsonl(args.queries)
    stemmer = Stemmer.Stemmer("english") if args.stemmer == "english" else None
    k = min(args.k, len(doc_ids))  # bm25s refuses a k above the corpus size

    def tokenize(texts: list[str], return_ids: bool):
        return bm25s.tokenize(texts, lower=True, stopwords=None, stemmer=stemmer,
                              return_ids=return_ids, show_progress=False)

    started = time.perf_counter()
    corpus_tokens = tokenize(doc_texts, return_ids=True)  # ids + vocab: what index() takes
    tokenize_s = time.perf_counter() - started
    index = bm25s.BM25(method="lucene", k1=args.k1, b=args.b)
    index.index(corpus_tokens, show_progress=False)
    build_s = time.perf_counter() - started
    del corpus_tokens
    print(f"bm25_peer: {len(doc_ids)} docs tokenised in {tokenize_s:.2f} s, "
          f"built in {build_s:.2f} s", file=sys.stderr)

    def search(texts: list[str], threads: int):
        # Queries as token strings: retrieve() turns token ids back into strings anyway.
        return index.retrieve(tokenize(texts, return_ids=False), k=k, n_threads=threads,
                              show_progress=False)

    def one_by_one() -> list:
        return [search([text], 0) for text in query_texts]

    answers, t_one = timed(one_by_one, args.repeat)
    _, t_batch_1t = timed(lambda: search(query_texts, 0), args.repeat)
    _, t_batch = timed(lambda: search(query_texts, args.threads), args.repeat)
    nq = len(query_ids)
    print(f"bm25_peer: {nq} queries, qps {nq / t_one:.0f}, batch 1 thread {nq / t_batch_1t:.0f}, "
          f"batch {args.threads} threads {nq / t_batch:.0f}", file=sys.stderr)

    results = {
        qid: [[doc_ids[d], float(s)] for d, s in zip(docs[0], scores[0]) if s > 0]
        for qid, (docs, scores) in zip(query_ids, answers)
    }
    matrix = index.scores
    print(json.dumps({
        "system": "bm25s",
        "version": bm25s.__version__,
        "k1": args.k1,
        "b": args.b,
        "stemmer": args.stemmer,
        "docs": len(doc_ids),
        "queries": nq,
        "build_s": build_s,
        "tokenize_s": tokenize_s,
        "index_bytes": sum(matrix[name].nbytes for name in ("data", "indices", "indptr")),
        "qps": nq / t_one,
        "qps_batch_1t": nq / t_batch_1t,
        "qps_batch": nq / t_batch,
        "results": results,
    }))


if __name__ == "__main__":
    main()
