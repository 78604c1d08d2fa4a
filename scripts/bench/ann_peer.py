"""Peer for `folio bench ann --peer <python>`: faiss-cpu HNSW (IndexHNSWFlat, inner product) and
hnswlib (space 'ip') built with the same M and ef_construction on the same vectors, searched at
the same ef_search values, scored against the same exact top-k. Prints one JSON object on stdout.

Inputs, written by Folio: --vectors, raw little-endian float32 rows (already L2-normalised; the
last --queries rows are the queries, the others are indexed with ids 0, 1, ...), and --truth,
the exact top-k ids of every query as little-endian uint32, k per query.

For every ef_search three speeds are measured, each the best of --repeat timed passes after one
untimed pass (which gives the recall):
  qps          one query per call, one after another, on one thread (faiss.omp_set_num_threads(1),
               hnswlib num_threads=1): what a service answering one request at a time sees, Python's
               per-call overhead included (call_overhead_us estimates it);
  qps_batch_1t all queries in one call on one thread: the engine's cost without that overhead;
  qps_batch    all queries in one call on --threads threads.
Builds use --threads threads. Memory: faiss, the length of faiss.serialize_index (the flat
float32 vectors plus the graph); hnswlib, the size of the file save_index writes (vectors, links
and labels). Run in the venv of scripts/bench/setup-ann-venv.sh.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from importlib.metadata import version

try:
    import faiss
    import hnswlib
    import numpy as np
except ImportError as e:  # a clear message for the Rust side to pass on
    sys.exit(f"{e}: create the venv with scripts/bench/setup-ann-venv.sh and pass "
             "--peer scripts/bench/.venv-ann/bin/python")


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


def best_time(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(name, build, set_ef, one, batch, set_threads, base, queries, truth, args):
    """Builds with `build`, then for every ef the recall and the three speeds."""
    k = truth.shape[1]
    set_threads(args.threads)
    started = time.perf_counter()
    index = build(base)
    build_s = time.perf_counter() - started
    print(f"ann_peer: {name} built in {build_s:.1f} s", file=sys.stderr)
    runs = []
    nq = len(queries)
    for ef in args.ef_search:
        set_ef(index, ef)
        set_threads(1)
        found = np.stack([one(index, q, k) for q in queries])

        def loop():
            for q in queries:
                one(index, q, k)

        t_one = best_time(loop, args.repeat)
        t_batch_1t = best_time(lambda: batch(index, queries, k, 1), args.repeat)
        set_threads(args.threads)
        t_batch = best_time(lambda: batch(index, queries, k, args.threads), args.repeat)
        runs.append({
            "ef_search": ef,
            "recall": recall(found, truth),
            "qps": nq / t_one,
            "qps_batch_1t": nq / t_batch_1t,
            "qps_batch": nq / t_batch,
            "call_overhead_us": max(0.0, (t_one - t_batch_1t) / nq * 1e6),
        })
    return {"build_s": build_s, "runs": runs}, index


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vectors", required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--queries", type=int, required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--m", type=int, required=True)
    p.add_argument("--ef-construction", type=int, required=True)
    p.add_argument("--ef-search", required=True, help="comma-separated")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    args.ef_search = [int(x) for x in args.ef_search.split(",")]

    data = np.fromfile(args.vectors, dtype="<f4").reshape(-1, args.dim)
    base, queries = data[: -args.queries], np.ascontiguousarray(data[-args.queries:])
    truth = np.fromfile(args.truth, dtype="<u4").reshape(args.queries, -1).astype(np.int64)
    n = len(base)

    def faiss_build(x):
        index = faiss.IndexHNSWFlat(args.dim, args.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = args.ef_construction
        index.add(x)
        return index

    def faiss_set_ef(index, ef):
        index.hnsw.efSearch = ef

    faiss_report, index = measure(
        "faiss", faiss_build, faiss_set_ef,
        lambda index, q, k: index.search(q[None, :], k)[1][0],
        lambda index, qs, k, _threads: index.search(qs, k),
        faiss.omp_set_num_threads, base, queries, truth, args)
    # Sizes are measured after the timed build: serialising is not part of building.
    faiss_report["memory_bytes"] = len(faiss.serialize_index(index))
    faiss_report["memory_measured_as"] = "faiss.serialize_index length"
    del index

    hnsw_threads = {"n": args.threads}  # hnswlib takes the thread count per call

    def hnsw_build(x):
        index = hnswlib.Index(space="ip", dim=args.dim)
        index.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construction,
                         random_seed=100)
        index.add_items(x, np.arange(n), num_threads=hnsw_threads["n"])
        return index

    hnsw_report, index = measure(
        "hnswlib", hnsw_build, lambda index, ef: index.set_ef(ef),
        lambda index, q, k: index.knn_query(q, k=k, num_threads=1)[0][0],
        lambda index, qs, k, threads: index.knn_query(qs, k=k, num_threads=threads),
        lambda t: hnsw_threads.update(n=t), base, queries, truth, args)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "hnswlib.bin")
        index.save_index(path)
        hnsw_report["memory_bytes"] = os.path.getsize(path)
    hnsw_report["memory_measured_as"] = "hnswlib save_index file size"

    print(json.dumps({
        "faiss_version": faiss.__version__,
        "hnswlib_version": version("hnswlib"),
        "numpy_version": np.__version__,
        "indexed": n,
        "queries": len(queries),
        "faiss": faiss_report,
        "hnswlib": hnsw_report,
    }))


if __name__ == "__main__":
    main()
