#!/usr/bin/env bash
# The GEO suite's real run on CPU, as reported in the closing notes of the ranking-manipulation
# issue: SmolLM2-135M-Instruct as ranker, attacker, perplexity model and injection checker.
#
#   scripts/bench/geo-real-run.sh OUT [STAGE...]
#
# Stages (default: all, in this order; each is resumable, so rerunning a stage after an
# interruption continues it):
#   catalog  template and rewriting attacks on the four product catalogs
#   cost     nDCG@10 of the pointwise re-ranker on SciFact with and without the defenses
#   gcg      the gradient attack on catalog scenarios (slowest per trial)
#   scifact  attacks on retrieval scenarios built from the `cost` stage's fused run
#
# Detectors run at their default thresholds (what `folio serve` ships). On 2 CPU cores one
# SmolLM2 pass over a 700-token prompt takes about a second, which sets the sizes below.
#
# Environment: FOLIO (the binary, default target/release/folio), MODEL (default
# models/SmolLM2-135M-Instruct-GGUF), SCENARIOS (catalog scenarios, default 8: two targets
# per catalog), GCG_SCENARIOS (default 4), TRIALS (presentation orders per scenario, default
# 1), QUERIES (SciFact queries of the cost stage, default 50), INDEX (a SciFact index to
# reuse, default OUT/scifact-cost/index).
set -euo pipefail

out=${1:?usage: geo-real-run.sh OUT [cost|catalog|gcg|scifact ...]}
shift
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(catalog cost gcg scifact)

root=$(cd "$(dirname "$0")/../.." && pwd)
folio=${FOLIO:-$root/target/release/folio}
model=${MODEL:-$root/models/SmolLM2-135M-Instruct-GGUF}
scenarios=${SCENARIOS:-8}
gcg_scenarios=${GCG_SCENARIOS:-4}
trials=${TRIALS:-1}
queries=${QUERIES:-50}
index=${INDEX:-$out/scifact-cost/index}
scifact=$root/../shared/data/beir-scifact
catalogs=$root/../shared/data/geo-catalogs
mkdir -p "$out"

for stage in "${stages[@]}"; do
    echo "== $stage ($(date -u +%H:%M:%S))"
    case $stage in
        cost)
            "$folio" eval retrieval --dataset "$scifact" --out "$out/scifact-cost" --index "$index" \
                --rerank pointwise --defenses none,all --max-queries "$queries" \
                --depth 10 --rerank-depth 10 --ranker "$model" \
                --perplexity-model "$model" --injection-model "$model"
            ;;
        catalog)
            "$folio" eval geo --scenarios "$catalogs" --ranker "$model" \
                --attacks template,rewrite --defenses none,detect,harden,all \
                --max-scenarios "$scenarios" --trials "$trials" --out "$out/catalogs"
            ;;
        gcg)
            "$folio" eval geo --scenarios "$catalogs" --ranker "$model" \
                --attacks gcg --gcg-steps 10 --gcg-candidates 16 --gcg-suffix 8 \
                --defenses none,detect,harden,all \
                --max-scenarios "$gcg_scenarios" --trials "$trials" --out "$out/catalogs"
            ;;
        scifact)
            "$folio" eval geo --scenarios "$scifact" --run "$out/scifact-cost/runs/rrf.trec" \
                --style pointwise --ranker "$model" \
                --attacks template:injection,template:authoritative,template:statistics,rewrite \
                --defenses none,detect,harden,all --max-scenarios "$gcg_scenarios" \
                --trials "$trials" --out "$out/scifact-geo"
            ;;
        *)
            echo "unknown stage $stage: cost, catalog, gcg or scifact" >&2
            exit 2
            ;;
    esac
done
echo "== done ($(date -u +%H:%M:%S))"
