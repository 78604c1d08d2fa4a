#!/usr/bin/env bash
# PostgreSQL full-text search on BEIR SciFact, for choosing the PostgreSQL backend's lexical
# route: loads the corpus (title and text in one column, as Folio's BM25 indexes it) into a
# throwaway PostgreSQL (scripts/pg/cluster.sh), runs every test query with the same SQL
# shape as folio_pg::PgStore::lexical under several rankings, and scores each run with
# `folio eval metrics` next to Folio's tantivy BM25 on the same data.
#
#   scripts/bench/pg-fts-scifact.sh OUT
#
# Environment: FOLIO (default target/release/folio), DATA (default
# ../shared/data/beir-scifact), PORT (default 56432). Needs python3 (stdlib only) to turn
# the JSONL files into COPY input.
set -euo pipefail
out=${1:?usage: pg-fts-scifact.sh OUT}
root=$(cd "$(dirname "$0")/../.." && pwd)
folio=${FOLIO:-$root/target/release/folio}
data=${DATA:-$root/../shared/data/beir-scifact}
port=${PORT:-56432}
mkdir -p "$out"
out=$(cd "$out" && pwd)

"$root/scripts/pg/cluster.sh" start "$out/pg" "$port" >/dev/null
trap '"$root/scripts/pg/cluster.sh" stop "$out/pg"' EXIT
bin=$("$root/scripts/pg/cluster.sh" install)
psql() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "${FOLIO_PG_USER:-folio-pg}" -- "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
  else
    "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
  fi
}

# COPY text format: tab-separated, backslash escapes.
python3 - "$data" "$out" <<'PY'
import json, sys
data, out = sys.argv[1], sys.argv[2]
def esc(s):
    return s.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ").replace("\r", " ")
with open(f"{out}/corpus.tsv", "w") as f:
    for line in open(f"{data}/corpus.jsonl"):
        d = json.loads(line)
        text = (d.get("title", "") + "\n" + d.get("text", "")).strip()
        f.write(f"{esc(d['_id'])}\t{esc(text)}\n")
judged = {l.split("\t")[0] for l in open(f"{data}/qrels/test.tsv").read().splitlines()[1:]}
with open(f"{out}/queries.tsv", "w") as f:
    for line in open(f"{data}/queries.jsonl"):
        q = json.loads(line)
        if q["_id"] in judged:
            f.write(f"{esc(q['_id'])}\t{esc(q['text'])}\n")
PY
chmod a+r "$out"/*.tsv
chmod a+rx "$out"

psql <<SQL
DROP TABLE IF EXISTS docs, queries;
CREATE TABLE docs (doc_id text PRIMARY KEY, text text NOT NULL,
                   tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED);
CREATE TABLE queries (qid text PRIMARY KEY, text text NOT NULL);
\copy docs (doc_id, text) FROM '$out/corpus.tsv'
\copy queries (qid, text) FROM '$out/queries.tsv'
CREATE INDEX ON docs USING gin (tsv);
-- BM25's statistics (k1 1.2, b 0.75, tantivy's IDF): each document's length in lexeme
-- occurrences, the average, and each lexeme's IDF from its document frequency.
ALTER TABLE docs ADD COLUMN dl float8;
UPDATE docs SET dl = (SELECT coalesce(sum(coalesce(array_length(positions, 1), 1)), 0)
                      FROM unnest(tsv));
CREATE TABLE bm25_avgdl AS SELECT avg(dl) AS avgdl, count(*) AS n FROM docs;
CREATE TABLE bm25_idf AS
  SELECT word AS lexeme, ln(1 + (a.n - ndoc + 0.5) / (ndoc + 0.5)) AS idf,
         ndoc > greatest(0.1 * a.n, 1000) AS common
  FROM ts_stat('SELECT tsv FROM docs'), bm25_avgdl a;
CREATE UNIQUE INDEX ON bm25_idf (lexeme);
ANALYZE docs;
SQL

# rank expressions: name|SQL over d.tsv and x.q
rankings=(
  "ts_rank_cd|ts_rank_cd(d.tsv, x.q)"
  "ts_rank_cd-len|ts_rank_cd(d.tsv, x.q, 1)"
  "ts_rank|ts_rank(d.tsv, x.q)"
  "ts_rank-len|ts_rank(d.tsv, x.q, 1)"
)
for r in "${rankings[@]}"; do
  name=${r%%|*}
  expr=${r#*|}
  start=$(date +%s.%N)
  psql -A -F ' ' -t <<SQL > "$out/$name.trec"
SELECT q.qid, 'Q0', p.doc_id, p.rn, p.score, 'pg-$name'
FROM queries q,
LATERAL (
  SELECT d.doc_id, $expr AS score, row_number() OVER (ORDER BY $expr DESC, d.doc_id) AS rn
  FROM docs d,
       (SELECT to_tsquery('english', string_agg(quote_literal(lexeme), ' | ')) AS q
        FROM unnest(to_tsvector('english', q.text))) x
  WHERE x.q IS NOT NULL AND d.tsv @@ x.q
  ORDER BY score DESC, d.doc_id
  LIMIT 100
) p
ORDER BY q.qid, p.rn;
SQL
  end=$(date +%s.%N)
  queries=$(wc -l < "$out/queries.tsv")
  secs=$(python3 -c "print(f'{$end - $start:.1f}')")
  echo "== $name ($queries queries in $secs s)"
  "$folio" eval metrics --qrels "$data/qrels/test.tsv" --run "$out/$name.trec" \
    --metric ndcg@10,recall@100,mrr@10
done

# BM25 as folio_pg's lexical route computes it (services/pg/src/bm25.rs): the formula over
# each document's lexeme counts, candidates from the query's lexemes that are not common
# (held by more than 10 % of the documents and more than 1,000), or from all of them when
# every one is common.
start=$(date +%s.%N)
psql -A -F ' ' -t <<SQL > "$out/bm25.trec"
SELECT q.qid, 'Q0', p.doc_id, row_number() OVER (PARTITION BY q.qid ORDER BY p.score DESC, p.doc_id),
       p.score, 'pg-bm25'
FROM queries q,
LATERAL (
  SELECT array_agg(i.lexeme) AS terms,
         coalesce(array_agg(i.lexeme) FILTER (WHERE NOT i.common), array_agg(i.lexeme)) AS cands
  FROM (SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', q.text))) l
  JOIN bm25_idf i USING (lexeme)
) t,
LATERAL (
  SELECT d.doc_id,
         (SELECT sum(i.idf * u.tf * 2.2 / (u.tf + 1.2 * (0.25 + 0.75 * d.dl / a.avgdl)))
          FROM (SELECT lexeme, coalesce(array_length(positions, 1), 1)::float8 AS tf
                FROM unnest(d.tsv)) u
          JOIN bm25_idf i USING (lexeme), bm25_avgdl a
          WHERE u.lexeme = ANY (t.terms)) AS score
  FROM docs d
  WHERE t.terms IS NOT NULL
    AND d.tsv @@ (SELECT string_agg(quote_literal(c), ' | ')::tsquery FROM unnest(t.cands) c)
  ORDER BY score DESC, d.doc_id
  LIMIT 100
) p
ORDER BY q.qid, 4;
SQL
end=$(date +%s.%N)
secs=$(python3 -c "print(f'{$end - $start:.1f}')")
echo "== bm25 ($(wc -l < "$out/queries.tsv") queries in $secs s)"
"$folio" eval metrics --qrels "$data/qrels/test.tsv" --run "$out/bm25.trec" \
  --metric ndcg@10,recall@100,mrr@10
