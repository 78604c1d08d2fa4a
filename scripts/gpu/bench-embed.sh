#!/usr/bin/env bash
# The issue-5 GPU benchmark, run ON the GPU machine from the repository root, with the
# binaries scripts/gpu/build-cuda.sh left in .gpu/:
#
#   scripts/gpu/build-cuda.sh -p folio --bin folio                    # here: .gpu/folio
#   FEATURES="cuda flash-attn" GPU_OUT=.gpu/flash \
#     scripts/gpu/build-cuda.sh -p folio --bin folio                  # here: .gpu/flash/folio
#   CARGO_SUBCOMMAND="test --no-run" FEATURES="cuda flash-attn" GPU_OUT=.gpu/flash \
#     scripts/gpu/build-cuda.sh -p folio-models --lib                 # here: the kernel tests
#   scripts/gpu/bench-embed.sh [OUT_DIR]                              # there
#
# Steps (each skipped when its binary is missing):
#   1. the flash-attention kernel tests (folio-models' unit tests `flash::tests::cuda`):
#      the fused kernels against plain f32 attention, full and left-padded causal;
#   2. a random-weight model with GME-Qwen2-VL-2B's exact config, written by
#      scripts/bench/random_qwen2vl.py with the machine's python3 (torch + transformers);
#   3. `folio bench embed` on it, bf16 on CUDA, 896x1152 pages (1,312 visual tokens each),
#      with HF transformers (bf16, sdpa) on the same inputs in the same run (`--peer`):
#      pages/s, tokens/s, the fraction of the measured bf16 matmul rate, the speed ratio
#      and the embeddings' minimum cosine; once per binary (plain cuda, then flash-attn).
# JSON reports and logs go to OUT_DIR (default $OUT when the device tool sets it, else
# target/gpu-bench). Knobs: MODEL_DIR, PAGES, BATCH, PYTHON, DEVICE (default cuda), PEER
# (the peer's python, default $PYTHON; empty: no peer).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT_DIR="${1:-${OUT:-target/gpu-bench}}"
MODEL_DIR="${MODEL_DIR:-/tmp/gme-qwen2-vl-2b-random}"
PAGES="${PAGES:-32}"
BATCH="${BATCH:-8}"
PYTHON="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
PEER="${PEER-$PYTHON}"
mkdir -p "$OUT_DIR"
log() { printf '[bench-embed] %s\n' "$*" >&2; }

# cuBLAS 13 ships inside the torch venv's nvidia wheels on the GPU machine.
CU13_LIB="$("$PYTHON" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)"
if [[ -d "$CU13_LIB" ]]; then export LD_LIBRARY_PATH="$CU13_LIB:${LD_LIBRARY_PATH:-}"; fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT_DIR/gpu.txt"
fi

shopt -s nullglob
for tests in .gpu/flash/folio_models-*; do
  log "kernel tests: $tests"
  "$tests" flash::tests::cuda --test-threads 1 2>&1 | tee "$OUT_DIR/flash-tests.log"
done

if [[ ! -f "$MODEL_DIR/config.json" ]]; then
  log "writing a random GME-Qwen2-VL-2B-shaped model to $MODEL_DIR"
  "$PYTHON" scripts/bench/random_qwen2vl.py --config scripts/bench/gme-qwen2-vl-2b.config.json \
    --out "$MODEL_DIR" --device "$DEVICE"
fi

ran=0
for bin in .gpu/folio .gpu/flash/folio; do
  [[ -x "$bin" ]] || continue
  name="$(basename "$(dirname "$bin")")"; [[ "$name" == .gpu ]] && name=cuda
  log "$bin bench embed ($name)"
  peer=(); [[ -n "$PEER" ]] && peer=(--peer "$PEER")
  "$bin" bench embed --model "$MODEL_DIR" --device "$DEVICE" --pages "$PAGES" \
    --batch-size "$BATCH" "${peer[@]}" --json > "$OUT_DIR/embed-$name.json" 2> "$OUT_DIR/embed-$name.log"
  "$PYTHON" - "$OUT_DIR/embed-$name.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
p = r.get("peer", {})
line = (f"{r['attention']}: {r['pages_per_s']:.2f} pages/s, {r['tokens_per_s']:.0f} tokens/s, "
        f"{100 * r['fraction_of_matmul_rate']:.1f}% of {r['matmul_tflops']:.3g} TFLOP/s")
if p:
    line += (f"; transformers {p.get('transformers', '?')} ({p.get('attention', '?')}): "
             f"Folio {r['speedup_vs_peer']:.2f}x its speed, min cosine {r['min_cosine_vs_peer']:.4f}")
print(line)
EOF
  ran=$((ran + 1))
done
[[ $ran -gt 0 ]] || { log "no .gpu/folio or .gpu/flash/folio: build them first (see the header)"; exit 1; }
