#!/usr/bin/env bash
# Checks Folio's flash-attn code paths on a machine with no GPU: the layouts handed to the
# kernels, the left-padded batch split into sequences, grouped-query heads, the output
# reshapes. The kernels themselves need a GPU (scripts/gpu/bench-embed.sh runs their tests
# there); here the CPU stand-in in scripts/gpu/flash-standin computes the same functions
# the plain way, and folio-models' parity tests (Qwen2-VL and Llama against transformers'
# fixtures) must still pass when every attention goes through them.
#
# It works on a copy of the working tree (tracked and untracked files), in which:
#   - candle-flash-attn is patched to the stand-in, and the feature stops implying `cuda`;
#   - flash.rs's `applies` also accepts the CPU and f32.
# Then it runs the parity tests twice: as they are (must pass), and with
# FLASH_STANDIN_FAIL=1 (must fail inside both stand-in functions, which shows the tests
# really went through the flash paths).
#
# Usage: scripts/gpu/flash-wiring-check.sh   (CARGO_TARGET_DIR is honoured; default target/)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
log() { printf '[flash-wiring] %s\n' "$*" >&2; }

cd "$REPO_ROOT"
git ls-files -z --cached --others --exclude-standard |
  xargs -0 cp --parents --no-dereference -t "$WORK" 2>/dev/null || true
cd "$WORK"

# edit FILE OLD NEW: replace a literal line fragment that must occur exactly once.
edit() {
  python3 - "$@" <<'EOF'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"{path}: expected one {old!r}, found {text.count(old)}")
open(path, "w").write(text.replace(old, new))
EOF
}
edit services/models/Cargo.toml \
  'flash-attn = ["cuda", "dep:candle-flash-attn"]' 'flash-attn = ["dep:candle-flash-attn"]'
edit services/models/src/flash.rs \
  '&& device.is_cuda()' '&& (device.is_cuda() || device.is_cpu())'
edit services/models/src/flash.rs \
  'matches!(dtype, DType::BF16 | DType::F16)' 'matches!(dtype, DType::BF16 | DType::F16 | DType::F32)'
printf '\n[patch.crates-io]\ncandle-flash-attn = { path = "scripts/gpu/flash-standin" }\n' >> Cargo.toml

TESTS=(-p folio-models --features flash-attn --test qwen2vl_parity --test llama_parity)
log "parity tests through the flash-attn paths (CPU stand-in)"
cargo test "${TESTS[@]}"

log "the same with the stand-in failing: every test that attends must fail in it"
set +e
FLASH_STANDIN_FAIL=1 cargo test "${TESTS[@]}" --no-fail-fast > "$WORK/poisoned.log" 2>&1
status=$?
set -e
for f in flash_attn flash_attn_varlen; do
  if ! grep -q "flash stand-in: $f called" "$WORK/poisoned.log"; then
    tail -40 "$WORK/poisoned.log" >&2
    log "FAIL: no test reached $f"; exit 1
  fi
done
[[ $status -ne 0 ]] || { log "FAIL: the tests passed with the stand-in failing"; exit 1; }
log "ok: the parity tests pass through flash_attn and flash_attn_varlen"
