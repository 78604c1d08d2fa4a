#!/usr/bin/env python3
"""Generates eval/tests/fixtures/metrics/: TREC qrels and runs that exercise the hard cases of IR
metric computation, and the values that pytrec_eval (trec_eval 9.0.8's C code) and ranx compute
for them, so that Folio's own metric implementation can be checked for exact equality.

Writes
  qrels.txt        TREC qrels, `qid 0 docid rel` (rel in -1..3)
  qrels_beir.tsv   the same judgements as BEIR TSV (`query-id<TAB>corpus-id<TAB>score` header)
  run.txt          TREC run, `qid Q0 docid rank score tag`; the rank column is deliberately
                   inconsistent with the scores for some queries (trec_eval ignores it)
  run_dup.txt      a tiny run with one duplicated (qid, docid) line
  expected.json    per-query values and means from both tools, the disagreements between them
                   with explanations, and notes on how each tool treats the edge cases

Both tools read the files written here with their own loaders (pytrec_eval.parse_qrel/parse_run,
ranx Qrels.from_file/Run.from_file). As a cross-check, every pytrec_eval value is recomputed by
an independent implementation of trec_eval's definitions in this file (`trec_reference`); the
script fails if they differ, or if a pytrec_eval/ranx disagreement has no known explanation.

Run with the venv from scripts/reference/setup-metrics-venv.sh:
    scripts/reference/.venv-metrics/bin/python scripts/reference/metrics_fixture.py
"""

import os

# One numba thread: deterministic and light on a small machine. Must be set before numba loads.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import pytrec_eval  # noqa: E402
import numpy as np  # noqa: E402
from numba.core.errors import NumbaTypeSafetyWarning  # noqa: E402
from numba.typed import List as TypedList  # noqa: E402
from ranx import Qrels, Run, evaluate  # noqa: E402

# numba warns that ranx's ndcg casts its uint64 prange index to int64: harmless, but noisy.
warnings.filterwarnings("ignore", category=NumbaTypeSafetyWarning)

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "eval" / "tests" / "fixtures" / "metrics"
GENERATOR = "scripts/reference/metrics_fixture.py"
SEED = 20240611
RUN_TAG = "folio-fixture"
TOLERANCE = 1e-9  # a pytrec_eval/ranx difference above this is a disagreement
REFERENCE_TOLERANCE = 1e-12  # this file's reimplementation must match pytrec_eval this closely
MAX_FIXTURE_BYTES = 200 * 1024

# (Folio CLI name, pytrec_eval output key or None, ranx metric name)
METRICS = [
    ("ndcg@5", "ndcg_cut_5", "ndcg@5"),
    ("ndcg@10", "ndcg_cut_10", "ndcg@10"),
    ("ndcg@100", "ndcg_cut_100", "ndcg@100"),
    ("ndcg", "ndcg", "ndcg"),
    ("map", "map", "map"),
    ("map@10", "map_cut_10", "map@10"),
    ("recall@10", "recall_10", "recall@10"),
    ("recall@100", "recall_100", "recall@100"),
    ("p@5", "P_5", "precision@5"),
    ("p@10", "P_10", "precision@10"),
    ("mrr", "recip_rank", "mrr"),
    ("mrr@10", None, "mrr@10"),  # pytrec_eval has no cut recip_rank: derived, see notes
    ("r-prec", "Rprec", "r-precision"),
    ("bpref", "bpref", "bpref"),
    ("success@1", "success_1", "hit_rate@1"),
    ("success@5", "success_5", "hit_rate@5"),
]
PYTREC_MEASURES = {
    "ndcg_cut.5,10,100",
    "ndcg",
    "map",
    "map_cut.10",
    "recall.10,100",
    "P.5,10",
    "recip_rank",
    "Rprec",
    "bpref",
    "success.1,5",
}


# ----------------------------------------------------------------------------------------------
# The cases


@dataclass
class Case:
    qid: str
    purpose: str
    qrels: list = None  # [(docid, rel)] in file order, or None: query absent from the qrels
    run: list = None  # [(docid, score)] in file order, or None: query absent from the run
    ranks: list = None  # rank column per run line; default 1..n in file order
    tags: set = field(default_factory=set)


def f32(x):
    """x rounded to IEEE single precision, as trec_eval 9.0.8 stores scores (`float sim`)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def distinct_scores(rng, n, lo, hi, decimals):
    """n scores, distinct even after rounding to float32, in descending order."""
    seen, out = set(), []
    while len(out) < n:
        s = round(rng.uniform(lo, hi), decimals)
        if f32(s) not in seen:
            seen.add(f32(s))
            out.append(s)
    return sorted(out, reverse=True)


def random_docids(rng, n, lo=1, hi=999):
    return [f"d{i}" for i in rng.sample(range(lo, hi + 1), n)]


def build_cases(rng):
    cases = []

    def add(*args, **kwargs):
        cases.append(Case(*args, **kwargs))

    # --- score ties: trec_eval breaks them by docid, lexicographically DEscending --------------
    add("ties-a", "tie block at 2.5 written in ascending docid order (d10 < d100 < d2 < d9)",
        qrels=[("d1", 0), ("d9", 2), ("d2", 1), ("d10", 0), ("d100", 0), ("d3", 0), ("d11", 1),
               ("d50", 3)],
        run=[("d1", 3.0), ("d10", 2.5), ("d100", 2.5), ("d2", 2.5), ("d9", 2.5), ("d3", 1.0),
             ("d11", 0.5)],
        tags={"ties"})
    add("ties-b", "negative scores; tie block at -0.7 written in numeric docid order; d2 is a "
        "prefix of d20; the best-scored doc is the last line of the query",
        qrels=[("d2", 1), ("d9", 0), ("d10", 3), ("d20", 0), ("d1", 0), ("d3", 2), ("d4", 1)],
        run=[("d2", -0.7), ("d9", -0.7), ("d10", -0.7), ("d11", -0.7), ("d20", -0.7),
             ("d3", -1.5), ("d1", -0.25)],
        tags={"ties", "unjudged", "unretrieved-rel"})
    docids = ["d7", "d70", "d8", "d80", "d700", "d9", "d90", "d10"]
    rng.shuffle(docids)
    rels = [rng.choice([0, 0, 1, 2, 3]) for _ in docids]
    rels[rng.randrange(len(rels))] = 3
    add("ties-all", "all 8 retrieved docs have the same score; lines in random order",
        qrels=list(zip(docids, rels)), run=[(d, 1.0) for d in docids], tags={"ties"})
    add("ties-zero", "0.0 and -0.0 scores tie",
        qrels=[("d5", 0), ("d50", 1), ("d6", 0), ("d4", 0)],
        run=[("d4", 0.25), ("d5", 0.0), ("d50", -0.0), ("d6", 0.0)], tags={"ties"})
    add("f32tie", "scores that differ in double but not in float32 (trec_eval 9.0.8 stores "
        "scores as float, so they tie and are ordered by docid descending)",
        qrels=[("d1", 1), ("d2", 0), ("d3", 0), ("d10", 2)],
        run=[("d1", 0.7000000002), ("d2", 0.7000000001), ("d3", 0.7), ("d10", 0.5)],
        tags={"ties", "f32"})

    # --- graded relevance 0..3 -----------------------------------------------------------------
    for i in (1, 2, 3):
        docids = random_docids(rng, 28)
        retrieved, extra = docids[:25], docids[25:]
        scores = distinct_scores(rng, 25, 0.0, 20.0, 3)
        qrels = []
        for d in retrieved:
            if rng.random() < 0.7:
                qrels.append((d, rng.choices([0, 1, 2, 3], weights=[5, 2, 2, 1])[0]))
        qrels += [(d, rng.choice([1, 2, 3])) for d in extra]  # relevant, never retrieved
        run = list(zip(retrieved, scores))
        ranks = None
        if i == 2:  # lines shuffled; rank column = line position, so it contradicts the scores
            rng.shuffle(run)
        add(f"graded-{i}", "graded relevance 0..3 with unjudged and never-retrieved relevant "
            "docs" + ("; lines shuffled, rank column follows the lines, not the scores"
                      if i == 2 else ""),
            qrels=qrels, run=run, ranks=ranks, tags={"graded", "unjudged", "unretrieved-rel"})

    # --- negative label (-1): trec_eval reads it as "in the pool but unjudged" ------------------
    add("neg-1", "labels -1 on retrieved docs (one above the first relevant) and on an "
        "unretrieved doc",
        qrels=[("d1", -1), ("d2", 2), ("d3", 0), ("d4", -1), ("d5", 1), ("d7", 0), ("d8", -1),
               ("d9", 1)],
        run=[("d1", 0.9), ("d2", 0.8), ("d3", 0.7), ("d4", 0.6), ("d5", 0.5), ("d6", 0.4),
             ("d7", 0.3)],
        tags={"negative", "unjudged"})
    add("neg-2", "a -1 doc ranked above the only relevant doc; one judged non-relevant doc",
        qrels=[("d1", -1), ("d2", 1), ("d4", 0)],
        run=[("d1", 0.5), ("d2", 0.4), ("d3", 0.3)], tags={"negative", "unjudged"})

    # --- no relevant documents -----------------------------------------------------------------
    add("norel-1", "every judgement is 0",
        qrels=[(f"d{i}", 0) for i in range(1, 6)],
        run=[("d1", 0.9), ("d3", 0.8), ("d7", 0.7), ("d2", 0.6)], tags={"norel"})
    add("norel-2", "every judgement is 0 and nothing retrieved is judged",
        qrels=[("d20", 0), ("d30", 0)],
        run=[("d10", 4.0), ("d11", 3.0), ("d12", 2.0), ("d13", 1.0)], tags={"norel"})

    # --- queries only in the run / only in the qrels --------------------------------------------
    for i in (1, 2):
        docids = random_docids(rng, 5)
        add(f"runonly-{i}", "in the run, absent from the qrels",
            run=list(zip(docids, distinct_scores(rng, 5, 0.0, 1.0, 4))), tags={"runonly"})
    add("qrelsonly-1", "in the qrels, absent from the run",
        qrels=[("d1", 1), ("d2", 2), ("d3", 0)], tags={"qrelsonly"})
    add("qrelsonly-2", "in the qrels (all judged 0), absent from the run",
        qrels=[("d1", 0), ("d2", 0)], tags={"qrelsonly", "norel"})

    # --- relevant docs never retrieved -----------------------------------------------------------
    docids = random_docids(rng, 16)
    rel_docs, run_docs = docids[:8], docids[8:]
    order = [run_docs[0], rel_docs[0], run_docs[1], run_docs[2], run_docs[3], run_docs[4],
             rel_docs[1], run_docs[5], run_docs[6], run_docs[7]]
    add("unretrieved-1", "8 relevant docs, 2 of them retrieved (ranks 2 and 7)",
        qrels=[(d, rng.choice([1, 2, 3])) for d in rel_docs] + [(run_docs[0], 0),
                                                                 (run_docs[3], 0)],
        run=list(zip(order, distinct_scores(rng, len(order), 1.0, 9.0, 2))),
        tags={"unretrieved-rel"})
    add("unretrieved-2", "3 relevant docs, none retrieved",
        qrels=[("d100", 1), ("d200", 2), ("d300", 3), ("d1", 0), ("d2", 0)],
        run=list(zip([f"d{i}" for i in range(1, 13)], distinct_scores(rng, 12, 0.0, 3.0, 3))),
        tags={"unretrieved-rel", "unjudged"})

    # --- runs longer than 100 ---------------------------------------------------------------------
    docids = random_docids(rng, 152)
    retrieved, extra = docids[:150], docids[150:]
    scores = [100.0 - 0.5 * p for p in range(150)]
    for p in range(40, 60):
        scores[p] = 75.25  # a 20-doc tie block (ranx sorts ties with an unstable quicksort)
    rel_at = {2: 1, 9: 2, 10: 1, 44: 3, 51: 1, 99: 2, 100: 1, 119: 1}
    nonrel_at = [0, 1, 5, 42, 47, 101]
    qrels = [(retrieved[p], r) for p, r in rel_at.items()] + [(retrieved[p], 0) for p in nonrel_at]
    qrels += [(extra[0], 1), (extra[1], 2)]
    run = list(zip(retrieved, scores))
    block = run[40:60]
    rng.shuffle(block)
    run[40:60] = block
    add("long-1", "150 docs, a 20-doc tie block, relevant docs around ranks 100/101",
        qrels=qrels, run=run, tags={"long", "ties", "unjudged", "unretrieved-rel"})
    docids = random_docids(rng, 120)
    scores = distinct_scores(rng, 120, 0.0, 50.0, 4)
    qrels = [(docids[0], 0), (docids[98], 1), (docids[99], 3), (docids[100], 2),
             (docids[119], 1)]
    run = list(zip(docids, scores))[::-1]  # lowest score first; rank column follows the lines
    add("long-2", "120 docs, relevant at ranks 99, 100, 101, 120; lines in ascending score "
        "order with rank 1 on the lowest score", qrels=qrels, run=run, tags={"long"})

    # --- runs of length 1 -------------------------------------------------------------------------
    add("single-1", "one retrieved doc, relevant",
        qrels=[("d42", 2), ("d43", 0)], run=[("d42", 1.0)], tags={"single"})
    add("single-2", "one retrieved doc, judged non-relevant; 2 relevant unretrieved",
        qrels=[("d7", 0), ("d8", 1), ("d9", 3)], run=[("d7", 0.1)],
        tags={"single", "unretrieved-rel"})
    add("single-3", "one retrieved doc, unjudged",
        qrels=[("d6", 1)], run=[("d5", 12.5)], tags={"single", "unjudged"})

    # --- unjudged retrieved docs ------------------------------------------------------------------
    pattern = ["U", "R1", "U", "N", "U", "R2", "N", "U", "U", "R1"]
    docids = random_docids(rng, 14)
    scores = distinct_scores(rng, 10, 0.0, 1.0, 5)
    qrels, run = [], []
    for d, kind, s in zip(docids, pattern, scores):
        run.append((d, s))
        if kind != "U":
            qrels.append((d, 0 if kind == "N" else int(kind[1])))
    qrels += [(d, 0) for d in docids[10:13]] + [(docids[13], 1)]
    add("unjudged-1", "unjudged docs interleaved with judged ones; more judged non-relevant "
        "than relevant", qrels=qrels, run=run, tags={"unjudged", "unretrieved-rel"})
    add("unjudged-2", "five unjudged docs above the only relevant doc",
        qrels=[("d60", 2), ("d61", 0)],
        run=[(f"d{i}", 1.0 - 0.125 * i) for i in range(1, 6)] + [("d60", 0.0)],
        tags={"unjudged"})
    add("bpref-allrel", "no judged non-relevant docs at all (bpref's min(R, N) is 0)",
        qrels=[("d1", 1), ("d2", 2), ("d3", 1)],
        run=[("d4", 0.9), ("d1", 0.8), ("d5", 0.7), ("d2", 0.6)],
        tags={"unjudged", "unretrieved-rel"})

    # --- random mixtures (1-decimal scores, so ties occur naturally) ------------------------------
    for name in ("mix-2", "mix-10", "mix-11"):
        docids = random_docids(rng, 45)
        retrieved = docids[:40]
        run = [(d, round(rng.uniform(0.0, 5.0), 1)) for d in retrieved]
        qrels = [(d, rng.choices([0, 1, 2, 3], weights=[4, 2, 1, 1])[0])
                 for d in rng.sample(retrieved, 24)]
        qrels += [(d, rng.choice([0, 1, 2])) for d in docids[40:]]
        ranks = None
        if name == "mix-2":  # rank column reversed: rank 1 on the last line
            ranks = list(range(len(run), 0, -1))
        add(name, "random scores with 1 decimal (natural ties), random graded labels"
            + ("; rank column reversed" if ranks else ""),
            qrels=qrels, run=run, ranks=ranks, tags={"ties", "graded", "unjudged"})
    return cases


DUP_LINES = [  # run_dup.txt: d8 appears twice for single-2 (first with the higher score)
    ("single-2", "d8", 1, 2.0),
    ("single-2", "d7", 2, 1.0),
    ("single-2", "d9", 3, 0.5),
    ("single-2", "d8", 4, 0.25),
    ("single-1", "d42", 1, 1.0),
]


# ----------------------------------------------------------------------------------------------
# Files


def fmt_score(s):
    return repr(float(s))


def write_files(cases):
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    qrels_lines, beir_lines, run_lines = [], ["query-id\tcorpus-id\tscore"], []
    for c in cases:
        for d, r in c.qrels or []:
            qrels_lines.append(f"{c.qid} 0 {d} {r}")
            beir_lines.append(f"{c.qid}\t{d}\t{r}")
        if c.run:
            ranks = c.ranks or list(range(1, len(c.run) + 1))
            for (d, s), rank in zip(c.run, ranks):
                run_lines.append(f"{c.qid} Q0 {d} {rank} {fmt_score(s)} {RUN_TAG}")
    dup_lines = [f"{q} Q0 {d} {r} {fmt_score(s)} {RUN_TAG}-dup" for q, d, r, s in DUP_LINES]
    for name, lines in [("qrels.txt", qrels_lines), ("qrels_beir.tsv", beir_lines),
                        ("run.txt", run_lines), ("run_dup.txt", dup_lines)]:
        (OUT_DIR / name).write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# Independent reimplementation of trec_eval 9.0.8's definitions (the cross-check)


def trec_order(run_q):
    """trec_eval's ranking: score (as float32) descending, ties by docid descending (strcmp)."""
    return sorted(run_q, key=lambda d: (f32(run_q[d]), d), reverse=True)


def trec_reference(qrels_q, run_q):
    ranking = trec_order(run_q)
    labels = [qrels_q.get(d) for d in ranking]  # None: not in qrels
    is_rel = [lab is not None and lab >= 1 for lab in labels]
    R = sum(1 for r in qrels_q.values() if r >= 1)
    N = sum(1 for r in qrels_q.values() if r == 0)  # negative labels count as unjudged
    ideal = sorted((r for r in qrels_q.values() if r > 0), reverse=True)

    def dcg(gains, k):
        s = 0.0
        for i, g in enumerate(gains[:k]):
            if g is not None and g > 0:
                s += g / math.log2(i + 2)
        return s

    def ndcg(k):
        idcg = dcg(ideal, k)
        return dcg(labels, k) / idcg if idcg > 0 else 0.0

    def ap(k):
        if R == 0:
            return 0.0
        s, hits = 0.0, 0
        for i, rel in enumerate(is_rel[:k]):
            if rel:
                hits += 1
                s += hits / (i + 1)
        return s / R

    first = next((i + 1 for i, rel in enumerate(is_rel) if rel), None)
    rr = 1.0 / first if first else 0.0
    bpref, nonrel_so_far = 0.0, 0
    for lab in labels:
        if lab is None or lab < 0:
            continue
        if lab == 0:
            nonrel_so_far += 1
        elif nonrel_so_far > 0:
            bpref += 1.0 - min(nonrel_so_far, R) / min(N, R)
        else:
            bpref += 1.0
    if R:
        bpref /= R
    n = len(ranking)
    return {
        "ndcg@5": ndcg(5), "ndcg@10": ndcg(10), "ndcg@100": ndcg(100), "ndcg": ndcg(n + R),
        "map": ap(n), "map@10": ap(10),
        "recall@10": sum(is_rel[:10]) / R if R else 0.0,
        "recall@100": sum(is_rel[:100]) / R if R else 0.0,
        "p@5": sum(is_rel[:5]) / 5, "p@10": sum(is_rel[:10]) / 10,
        "mrr": rr, "mrr@10": rr if first and first <= 10 else 0.0,
        "r-prec": sum(is_rel[:min(n, R)]) / R if R else 0.0,
        "bpref": bpref,
        "success@1": 1.0 if any(is_rel[:1]) else 0.0,
        "success@5": 1.0 if any(is_rel[:5]) else 0.0,
    }, ranking


# ----------------------------------------------------------------------------------------------
# The tools


def seq_mean(values):
    """Arithmetic mean summed left to right (trec_eval accumulates per query in qid order)."""
    s = 0.0
    for v in values:
        s += v
    return s / len(values)


def run_pytrec(qrels_path, run_path):
    with open(qrels_path) as f:
        qrels = pytrec_eval.parse_qrel(f)
    with open(run_path) as f:
        run = pytrec_eval.parse_run(f)
    raw = pytrec_eval.RelevanceEvaluator(qrels, PYTREC_MEASURES).evaluate(run)
    return qrels, run, to_folio_pytrec(raw)


def to_folio_pytrec(raw):
    per_query = {}
    for qid in sorted(raw):
        vals = {}
        for folio, key, _ in METRICS:
            if key is not None:
                vals[folio] = float(raw[qid][key])
        # mrr@10 from recip_rank = 1/r: it is recip_rank when r <= 10, i.e. recip_rank >= 0.1.
        rr = vals["mrr"]
        vals["mrr@10"] = rr if rr >= 0.1 else 0.0
        per_query[qid] = {folio: vals[folio] for folio, _, _ in METRICS}
    return per_query


def run_ranx(qrels_path, run_path, keep_qids=None):
    """ranx per-query values, means, rankings, and the queries whose batch bpref is corrupted.

    bpref is evaluated one query at a time: ranx's bpref raises ZeroDivisionError inside its
    numba prange loop for a query with R = 0, the loop stops silently and every later query (in
    qid order) keeps bpref 0.0. Evaluated alone, such a query gets 0.0 and the others are intact.
    """
    qrels = Qrels.from_file(str(qrels_path), kind="trec")
    run = Run.from_file(str(run_path), kind="trec")
    if keep_qids is not None:
        qrels = Qrels.from_dict({q: dict(qrels[q]) for q in qrels.keys() if q in keep_qids})
    names = [r for _, _, r in METRICS]
    means = evaluate(qrels, run, names, make_comparable=True)
    qids = list(run.get_query_ids())
    ql, rl = qrels.to_typed_list(), run.to_typed_list()
    assert list(qrels.keys()) == qids
    bpref_alone = {q: float(evaluate(TypedList([ql[i]]), TypedList([rl[i]]), "bpref"))
                   for i, q in enumerate(qids)}
    corrupted = [q for q in qids
                 if not same(float(run.scores["bpref"][q]), bpref_alone[q])]
    per_query = {}
    for qid in qids:
        vals = {folio: clean(run.scores[r][qid]) for folio, _, r in METRICS}
        vals["bpref"] = clean(bpref_alone[qid])
        per_query[qid] = vals
    mean = {folio: clean(means[r]) for folio, _, r in METRICS}
    mean["bpref"] = clean(np.mean([bpref_alone[q] for q in qids]))
    orders = {qid: list(run.run[qid].keys()) for qid in qids}
    return per_query, mean, orders, {"batch_mean": clean(means["bpref"]),
                                     "corrupted_queries": corrupted}


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def clean(x):
    x = float(x)
    return None if math.isnan(x) else x


def bundled_trec_eval_version():
    """trec_eval version compiled into pytrec_eval's extension (its build path names it)."""
    import pytrec_eval_ext

    data = Path(pytrec_eval_ext.__file__).read_bytes()
    found = sorted(set(re.findall(rb"trec_eval-(\d+\.\d+(?:\.\d+)?)", data)))
    return ", ".join(v.decode() for v in found) or "unknown"


def probe(qrels, run, measure):
    return pytrec_eval.RelevanceEvaluator(qrels, {measure}).evaluate(run)["q"][measure]


# ----------------------------------------------------------------------------------------------


def explain(metric, qid, case, te, rx, te_order, rx_order):
    """Why pytrec_eval and ranx differ for (metric, qid); None when there is no known reason."""
    if case.run is None:
        return ("query is in the qrels but not in the run: pytrec_eval (like trec_eval without -c) "
                "outputs nothing for it; ranx (make_comparable=True) gives it an empty ranking, "
                "so 0")
    if metric == "bpref" and rx is None:
        return ("no judged non-relevant doc (N = 0): ranx divides by min(R, N) = 0 unguarded and "
                "gets 0/0 = NaN (written as null); trec_eval adds 1 for each relevant doc with "
                "no judged non-relevant doc above it, so bpref = relevant retrieved / R")
    if metric == "bpref" and "negative" in case.tags:
        return ("label -1: trec_eval treats a negative judgement as 'in the pool but unjudged' "
                "(skipped by bpref and not counted in N); ranx counts every label < 1 as "
                "judged non-relevant, so N and the non-relevant docs above each relevant doc "
                "differ")
    if te_order != rx_order:
        i = next(i for i, (a, b) in enumerate(zip(te_order, rx_order)) if a != b)
        why = ("scores that differ only beyond float32 precision tie in trec_eval 9.0.8 "
               "(float sim) and are ordered by docid descending; ranx compares the doubles"
               if "f32" in case.tags else
               "tied scores: trec_eval orders ties by docid descending (strcmp), ranx keeps "
               "the order its unstable numba quicksort on -score leaves them in (file order "
               "for short runs)")
        return f"{why}; rankings first differ at rank {i + 1} (trec_eval {te_order[i]}, ranx " \
               f"{rx_order[i]})"
    return None


def main():
    rng = random.Random(SEED)
    cases = build_cases(rng)
    by_qid = {c.qid: c for c in cases}
    assert len(by_qid) == len(cases)
    write_files(cases)
    qrels_path, run_path = OUT_DIR / "qrels.txt", OUT_DIR / "run.txt"

    # --- pytrec_eval ----------------------------------------------------------------------------
    te_qrels, te_run, te_pq = run_pytrec(qrels_path, run_path)
    te_mean = {m: seq_mean([te_pq[q][m] for q in te_pq]) for m, _, _ in METRICS}
    n_qrels = len(te_qrels)
    te_mean_complete = {m: sum(te_pq[q][m] for q in te_pq) / n_qrels for m, _, _ in METRICS}

    # --- cross-check with this file's reimplementation --------------------------------------------
    max_ref_diff = 0.0
    te_orders = {}
    for qid in te_pq:
        ref, te_orders[qid] = trec_reference(te_qrels[qid], te_run[qid])
        for m, _, _ in METRICS:
            d = abs(ref[m] - te_pq[qid][m])
            max_ref_diff = max(max_ref_diff, d)
            if d > REFERENCE_TOLERANCE:
                sys.exit(f"reimplementation differs from pytrec_eval: {qid} {m} "
                         f"{ref[m]!r} vs {te_pq[qid][m]!r}")

    # --- ranx -----------------------------------------------------------------------------------
    rx_pq, rx_mean, rx_orders, rx_bpref = run_ranx(qrels_path, run_path)

    # mrr@10 hand check: ranx's mrr@10 must be its mrr cut at rank 10, and where both tools rank
    # alike it must equal the value derived from pytrec_eval's recip_rank.
    hand_checks = []
    for qid in rx_pq:
        rx = rx_pq[qid]
        assert rx["mrr@10"] == (rx["mrr"] if rx["mrr"] >= 0.1 else 0.0), qid
        if qid in te_pq and te_orders[qid] == rx_orders[qid]:
            assert abs(rx["mrr@10"] - te_pq[qid]["mrr@10"]) <= TOLERANCE, qid
    for qid in ["ties-a", "graded-1", "long-1", "long-2", "unjudged-2", "single-2"]:
        order = te_orders[qid]
        first = next((i + 1 for i, d in enumerate(order) if te_qrels[qid].get(d, 0) >= 1), None)
        where = (f"at rank {first} ({order[first - 1]})" if first
                 else "nowhere (no relevant doc retrieved)")
        hand_checks.append(
            f"mrr@10 by hand, {qid}: first relevant doc in trec_eval's order {where}, so "
            f"mrr@10 = {'1/%d' % first if first and first <= 10 else '0'}; pytrec_eval-derived "
            f"{te_pq[qid]['mrr@10']!r}, ranx {rx_pq[qid]['mrr@10']!r}"
            + ("" if te_orders[qid] == rx_orders[qid] else " (ranx ranks the ties differently)"))

    # --- disagreements ----------------------------------------------------------------------------
    disagreements = []
    for qid in sorted(set(te_pq) | set(rx_pq)):
        for m, _, _ in METRICS:
            te = te_pq.get(qid, {}).get(m)
            rx = rx_pq.get(qid, {}).get(m)
            if te is not None and rx is not None and abs(te - rx) <= TOLERANCE:
                continue
            why = explain(m, qid, by_qid[qid], te, rx, te_orders.get(qid), rx_orders.get(qid))
            if why is None:
                sys.exit(f"unexplained disagreement: {qid} {m}: pytrec_eval {te!r}, ranx {rx!r}")
            disagreements.append({"metric": m, "qid": qid, "pytrec_eval": te, "ranx": rx,
                                  "explanation": why})
    for m, _, _ in METRICS:
        te, rx = te_mean[m], rx_mean[m]
        if rx is None or abs(te - rx) > TOLERANCE:
            disagreements.append({
                "metric": m, "qid": None, "scope": "mean", "pytrec_eval": te, "ranx": rx,
                "pytrec_eval_mean_complete": te_mean_complete[m],
                "explanation": (
                    f"means over different query sets (pytrec_eval: the {len(te_pq)} queries "
                    f"in both run and qrels; ranx: all {len(rx_pq)} qrels queries) and the "
                    f"per-query disagreements above" + ("; ranx's mean is NaN because some "
                                                        "per-query bpref is NaN"
                                                        if rx is None else ""))})

    # --- duplicates -------------------------------------------------------------------------------
    dup_path = OUT_DIR / "run_dup.txt"
    try:
        with open(dup_path) as f:
            pytrec_eval.parse_run(f)
        parse_run_result = "accepted"
    except AssertionError:
        parse_run_result = "AssertionError (parse_run asserts each (qid, docid) is new)"
    first_wins, last_wins = {}, {}
    for q, d, _, s in DUP_LINES:
        first_wins.setdefault(q, {}).setdefault(d, s)
        last_wins.setdefault(q, {})[d] = s
    dup_qids = sorted(first_wins)
    dup_qrels = {q: te_qrels[q] for q in dup_qids}
    ev = pytrec_eval.RelevanceEvaluator(dup_qrels, PYTREC_MEASURES)
    dup_rx_pq, _, dup_rx_orders, _ = run_ranx(qrels_path, dup_path, keep_qids=set(dup_qids))
    last_te = to_folio_pytrec(ev.evaluate(last_wins))
    assert all(abs(dup_rx_pq[q][m] - last_te[q][m]) <= TOLERANCE
               for q in dup_qids for m, _, _ in METRICS), "ranx on run_dup.txt: not last-wins"
    duplicates = {
        "file": "run_dup.txt",
        "qrels": f"qrels.txt restricted to {dup_qids}",
        "duplicate": "single-2 d8: line 1 score 2.0, line 4 score 0.25",
        "trec_eval": ("trec_eval rejects the whole run: te_form_res_rels (form_res_rels.c) sorts "
                      "each query's docs by docno and on two equal docnos prints "
                      "'trec_eval.form_res_qrels: duplicate docs d8' and returns UNDEF, and "
                      "trec_eval.c then prints \"Can't calculate measure\" and exits with status 4 "
                      "(no output at all)"),
        "pytrec_eval_parse_run": parse_run_result,
        "pytrec_eval_input": ("RelevanceEvaluator takes dicts, so a duplicate cannot reach "
                              "trec_eval's check; the values below are for the run loaded with "
                              "the first and with the last line winning"),
        "pytrec_eval": {"first_wins": to_folio_pytrec(ev.evaluate(first_wins)),
                        "last_wins": to_folio_pytrec(ev.evaluate(last_wins))},
        "ranx_from_file": ("Run.from_file assigns run[qid][docid] = score line by line: the "
                           "last line wins (the doc keeps the dict position of its first line, "
                           "which only matters for ties)"),
        "ranx": dup_rx_pq,
        "ranx_order": {q: dup_rx_orders[q] for q in dup_qids},
    }

    # --- probes: tie-breaking direction and float32 scores, straight from pytrec_eval -------------
    tie_probe = probe({"q": {"d10": 1}}, {"q": {"d9": 1.0, "d10": 1.0}}, "recip_rank")
    f32_probe = probe({"q": {"d1": 1}}, {"q": {"d1": 0.5000000001, "d2": 0.5}}, "recip_rank")
    assert tie_probe == 0.5 and f32_probe == 0.5, (tie_probe, f32_probe)

    queries = {c.qid: {"purpose": c.purpose, "in_qrels": c.qrels is not None,
                       "in_run": c.run is not None, "run_length": len(c.run or [])}
               for c in cases}
    notes = [
        "Metric names: Folio's CLI names; 'metric_map' gives the pytrec_eval output key "
        "(trec_eval measure) and the ranx metric for each. Relevance level 1 throughout: "
        "a doc is relevant when its label is >= 1.",
        "Ranking (trec_eval, hence pytrec_eval): the rank column of the run is ignored. Docs are "
        "sorted by score descending, ties by docid DEscending in strcmp (byte) order: "
        "comp_sim_docno() used by te_form_res_rels() in trec_eval's form_res_rels.c returns "
        "strcmp(docno2, docno1). So among equal scores d9 precedes d20, d20 precedes d2, d2 "
        "precedes d100 and d100 precedes d10. Probe: qrels "
        "{d10: 1}, run {d9: 1.0, d10: 1.0} gives recip_rank " + repr(tie_probe) + ".",
        "Scores are float32 in trec_eval 9.0.8 (the version compiled into pytrec_eval-terrier "
        "0.5.11: TEXT_RESULTS.sim and DOCNO_INFO.sim are 'float'), so scores equal after "
        "rounding to float32 tie. Probe: run {d1: 0.5000000001, d2: 0.5}, qrels {d1: 1} gives "
        "recip_rank " + repr(f32_probe) + ". trec_eval's source moved to double after 9.0.8 "
        "(commit 'Convert float to double', 2023); 9.0.8 and pytrec_eval still use float.",
        "Ranking (ranx): Run sorts each query by -score with numba's np.argsort (quicksort, not "
        "stable; insertion sort below 16 elements). Ties therefore keep the run file's line "
        "order for short runs and an implementation-defined order in longer ones (see long-1's "
        "20-doc tie block). Docids are compared through a 64-bit hash cast to float64.",
        "Queries in the run but not in the qrels (runonly-*): pytrec_eval skips them (no "
        "per-query entry; trec_eval does the same). ranx refuses mismatched query sets unless "
        "make_comparable=True, which drops them. Neither counts them in the mean.",
        "Queries in the qrels but not in the run (qrelsonly-*): pytrec_eval evaluates only the "
        "run's queries, so they have no per-query entry and are not in its mean (= trec_eval "
        "without -c). ranx with make_comparable=True adds an empty ranking for them: per-query 0, "
        "included in the mean. 'mean_complete' in the pytrec_eval section "
        "is what trec_eval -c reports: the sum over the evaluated queries divided by the number of "
        "qrels queries (" + str(n_qrels) + "); every metric here is 0 for an empty ranking.",
        "Means: pytrec_eval 'mean' = arithmetic mean of its per-query values over the " +
        str(len(te_pq)) + " queries in both run and qrels, summed left to right in qid order as "
        "trec_eval accumulates (pytrec_eval itself returns per-query values only). ranx 'mean' = "
        "ranx's own np.mean over all " + str(len(rx_pq)) + " qrels queries; null when a "
        "per-query value is NaN. Summation order can move the last bits: compare means with a "
        "small tolerance.",
        "Queries with no relevant doc (norel-*): trec_eval outputs them with every measure 0 "
        "and counts them in the mean; ranx too, but its bpref fails on them (see bpref (ranx)).",
        "Negative labels: both tools accept -1. trec_eval treats a negative label as 'in the "
        "pool, unjudged' (RELVALUE_UNJUDGED): never relevant, no gain, not counted in R, skipped "
        "by bpref and not counted as judged non-relevant. ranx: never relevant, no gain, but "
        "counted as judged non-relevant by bpref.",
        "nDCG (both tools): linear gain = the label (not 2^label - 1), discount log2(rank + 1), "
        "only labels > 0 contribute. The ideal ranking uses every judged doc with label > 0 "
        "from the qrels (retrieved or not), cut at k for ndcg@k and uncut for ndcg. nDCG is 0 "
        "when the ideal DCG is 0.",
        "map / map@10: sum over relevant retrieved docs (within the cut) of precision at their "
        "rank, divided by R = number of docs labelled >= 1 in the qrels (not min(R, k)). "
        "recall@k = relevant in top k / R; p@k = relevant in top k / k even when fewer than k "
        "docs were retrieved; all 0 when R = 0.",
        "r-prec (Rprec): relevant docs in the top R / R; a run shorter than R is not padded "
        "(counts what is there, still divided by R).",
        "bpref (trec_eval): N = docs labelled 0; walking the ranking, skipping docs that are "
        "unjudged or labelled negative, each relevant doc adds 1 - min(n, R) / min(N, R) where n "
        "is the number of judged non-relevant docs above it, or 1 if n = 0; divided by R "
        "(0 when R = 0).",
        "bpref (ranx): R = labels >= 1, N = every label < 1 (including -1), unjudged = not in "
        "the qrels; each relevant doc adds 1 - min(n, R) / min(N, R), with no special case for "
        "N = 0 (NaN, null here). For a query with R = 0 ranx's bpref raises ZeroDivisionError "
        "inside its numba prange loop: in a batch the loop stops silently and every later query "
        "in qid order keeps 0.0 (here " + str(len(rx_bpref["corrupted_queries"])) + " queries "
        "wrong: " + ", ".join(rx_bpref["corrupted_queries"]) + "; batch mean " +
        ("NaN" if rx_bpref["batch_mean"] is None else repr(rx_bpref["batch_mean"])) +
        "). The ranx bpref values and mean in this file were "
        "computed one query at a time (evaluate on one-element typed lists); alone, an R = 0 "
        "query gets 0.0.",
        "mrr@10: pytrec_eval has no cut recip_rank; its value here is derived from pytrec_eval's "
        "recip_rank (= 1/r): recip_rank if recip_rank >= 0.1 (r <= 10), else 0. It was checked "
        "against ranx's mrr@10 on every query both tools rank identically, and by hand (see "
        "'hand_checks').",
        "success@k (trec_eval success_k, ranx hit_rate@k): 1 when a relevant doc is in the top k.",
        "Cross-check: every pytrec_eval per-query value equals this generator's independent "
        "reimplementation of trec_eval's definitions (max abs difference " + repr(max_ref_diff) +
        ").",
        "Rank column: inconsistent with the scores on purpose for graded-2 (lines shuffled), "
        "long-2 (ascending score order, rank 1 = lowest score), mix-2 (rank column reversed), "
        "ties-b (best score on the last line) and within the tie blocks.",
        "Disagreements: every (metric, qid) whose values differ by more than " + repr(TOLERANCE) +
        " or that only one tool reports; entries with scope 'mean' compare the means.",
        "Floats are Python repr (shortest round-trip); null stands for NaN.",
    ]

    expected = {
        "generator": GENERATOR,
        "seed": SEED,
        "versions": {
            "python": platform.python_version(),
            "pytrec-eval-terrier": version("pytrec-eval-terrier"),
            "trec_eval (inside pytrec_eval)": bundled_trec_eval_version(),
            "ranx": version("ranx"),
            "numba": version("numba"),
            "numpy": version("numpy"),
        },
        "notes": notes,
        "hand_checks": hand_checks,
        "metric_map": {f: {"pytrec_eval": p if p else "derived from recip_rank", "ranx": r}
                       for f, p, r in METRICS},
        "queries": queries,
        "pytrec_eval": {"mean": te_mean, "mean_complete": te_mean_complete,
                        "evaluated_queries": sorted(te_pq), "per_query": te_pq},
        "ranx": {"mean": rx_mean, "evaluated_queries": sorted(rx_pq), "per_query": rx_pq,
                 "bpref_batch": rx_bpref},
        "rankings": {q: {"trec_eval": te_orders[q], "ranx": rx_orders[q]}
                     for q in sorted(te_orders) if te_orders[q] != rx_orders[q]},
        "disagreements": disagreements,
        "duplicates": duplicates,
    }
    text = json.dumps(expected, indent=1, allow_nan=False) + "\n"
    (OUT_DIR / "expected.json").write_text(text)

    total = sum(p.stat().st_size for p in OUT_DIR.iterdir() if p.is_file())
    if total > MAX_FIXTURE_BYTES:
        sys.exit(f"fixture too large: {total} bytes")
    print(f"wrote {OUT_DIR.relative_to(ROOT)}: {len(cases)} queries, "
          f"{len(disagreements)} disagreements, {total} bytes; "
          f"pytrec_eval {version('pytrec-eval-terrier')}, ranx {version('ranx')}")


if __name__ == "__main__":
    main()
