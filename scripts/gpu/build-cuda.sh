#!/usr/bin/env bash
# Build a Rust binary with candle's `cuda` feature on a machine that has NO CUDA
# toolkit and NO GPU, so the binary can be carried to a GPU machine and run there.
#
# Usage:
#   scripts/gpu/build-cuda.sh [cargo build args...]
#   e.g. scripts/gpu/build-cuda.sh -p folio-cli --bin folio
#        scripts/gpu/build-cuda.sh --manifest-path /work/scratch/cuda-smoke/Cargo.toml
# The script always adds `--release`, and `--features "$FEATURES"` (default: cuda;
# set FEATURES= to add no feature flag). Executables it builds are copied, stripped,
# into .gpu/ at the repo root (git-ignored) to be carried to the GPU machine.
#
# Knobs (environment):
#   CUDA_TARGET_DIR   cargo target dir (default /work/target-cuda; kept apart from the
#                     normal target dir so CPU and CUDA builds do not thrash each other)
#   CUDA_COMPUTE_CAP  GPU arch to compile kernels for (default 90 = H100 -> sm_90a)
#   FEATURES          cargo features to enable (default: cuda; "cuda flash-attn" adds
#                     the flash-attention kernels, see step 3b)
#   CUTLASS_GIT       where to clone CUTLASS from for flash-attn (default: GitHub)
#   FLASH_ATTN_BUILD_DIR  where the compiled flash-attention kernels are cached
#                     (default .cuda/flash-attn-build)
#   GPU_OUT           where executables are copied (default <repo>/.gpu)
#   CARGO_SUBCOMMAND  default "build"; "test --no-run" builds test executables instead
#                     (e.g. -p folio-models --lib: the unit tests, flash kernels' among them)
#
# What candle 0.11.1 + cuda needs at BUILD time, and how each need is met here:
#   * cudarc 0.19.10 (features dynamic-linking + cuda-version-from-build-system):
#     - runs `nvcc --version` from PATH to pick its CUDA API version (13.0 here);
#     - emits `-l cuda -l nvrtc -l curand -l cublas -l cublasLt` and link-search dirs
#       $CUDA_HOME/{lib,lib/stubs,lib64,...}.
#   * candle-kernels 0.11.1 (build.rs uses the `cudaforge` crate):
#     - finds nvcc via $NVCC, PATH, or $CUDA_HOME/bin; compiles src/*.cu to PTX
#       (embedded in the binary) and moe/mmq *.cu to a static libmoe.a with the host
#       g++ (Debian 12's gcc 12 is accepted by nvcc 13.0);
#     - takes the GPU arch from $CUDA_COMPUTE_CAP (otherwise it runs nvidia-smi, which
#       does not exist here); 90 becomes sm_90a;
#     - links `-l cudart` and `-l stdc++`.
#   So we need: nvcc 13.0 (+ptxas, cicc, libdevice), the CUDA headers (runtime, crt,
#   cccl for cub/cuda::std), and linkable libcuda/libnvrtc/libcurand/libcublas/
#   libcublasLt/libcudart.
#
# Steps:
#   1. Install NVIDIA's official PyPI wheels for CUDA 13.0 into .cuda/pip (git-ignored).
#      CUDA 13 wheels all unpack into one tree nvidia/cu13/{bin,include,lib,nvvm},
#      which is laid out like a toolkit root, so it serves as CUDA_HOME. Versions are
#      pinned to 13.0 because the GPU machine has driver 580 (CUDA 13.0): PTX from a
#      newer nvcc would use a PTX ISA that driver cannot JIT, and the binary must
#      link against SONAMEs that exist there (libcudart.so.13, libnvrtc.so.13,
#      libcurand.so.10, libcublas.so.13, libcublasLt.so.13). Re-run only when the
#      pins change (stamp file).
#   2. The wheels ship only versioned libraries (libcublas.so.13, ...), but the linker
#      resolves `-lcublas` through the unversioned name, so we add the usual dev
#      symlinks libX.so -> libX.so.N inside that lib/ dir (what a toolkit's -dev
#      package would provide).
#   3. libcuda (driver API) comes with the GPU driver, is on no PyPI wheel and not in
#      Debian main. A real toolkit solves this with lib/stubs/libcuda.so: a library
#      that only exports the cu* symbols and carries SONAME libcuda.so.1, used at
#      link time only. We build the same stub here with gcc: the symbol list is every
#      driver function cudarc can call (the names in cudarc's own
#      src/driver/sys/mod.rs, located with `cargo metadata`), each an empty function.
#      It lands in $CUDA_HOME/lib/stubs/, which cudarc already adds to the search
#      path. The stub is never shipped: at run time the binary's NEEDED libcuda.so.1
#      is the GPU machine's real driver library.
#   4. Export CUDA_HOME, PATH (nvcc first), CUDA_COMPUTE_CAP and run
#      `cargo build --release --features cuda` into $CUDA_TARGET_DIR.
#   5. Copy the built executables into .gpu/, strip them (debug info makes them huge;
#      everything carried to the GPU machine must stay small), and print their NEEDED
#      libraries and the newest glibc symbol version they need, so one can check
#      they match the GPU machine (Ubuntu 24.04, glibc 2.39) before using it.
#
# The GPU machine then needs (see scripts/gpu/README.md): the NVIDIA driver
# (libcuda.so.1), CUDA 13.x runtime libs on the loader path, and
# LD_LIBRARY_PATH pointing at a dir holding libcublas.so.13 / libcublasLt.so.13.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CUDA_DIR="$REPO_ROOT/.cuda"
PIP_DIR="$CUDA_DIR/pip"
CUDA_ROOT="$PIP_DIR/nvidia/cu13"
export CARGO_TARGET_DIR="${CUDA_TARGET_DIR:-/work/target-cuda}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
FEATURES="${FEATURES-cuda}"
CARGO_SUBCOMMAND="${CARGO_SUBCOMMAND:-build}"
GPU_OUT="${GPU_OUT:-$REPO_ROOT/.gpu}"

log() { printf '[build-cuda] %s\n' "$*" >&2; }

# ---- 1. CUDA 13.0 toolkit pieces from PyPI -----------------------------------
WHEELS=(
  nvidia-cuda-nvcc==13.0.88     # nvcc, ptxas, fatbinary, nvlink, cudafe++
  nvidia-nvvm==13.0.88          # cicc + libdevice (nvcc's device front end)
  nvidia-cuda-crt==13.0.88      # include/crt/* (needed by every .cu compile)
  nvidia-cuda-runtime==13.0.88  # cuda_runtime.h, cuda_fp16.h, cuda_bf16.h, cuda.h, libcudart.so.13
  nvidia-cuda-cccl==13.0.85     # include/cccl: cub, thrust, libcu++ (nvcc adds it itself)
  nvidia-cuda-nvrtc==13.0.88    # libnvrtc.so.13
  nvidia-curand==10.4.0.35      # libcurand.so.10 (CUDA 13.0)
  nvidia-cublas==13.0.2.14      # libcublas.so.13, libcublasLt.so.13 (CUDA 13.0)
)
STAMP="$CUDA_DIR/.wheels.stamp"
WANT_STAMP="$(printf '%s\n' "${WHEELS[@]%%#*}" | tr -d ' ')"
if [[ ! -x "$CUDA_ROOT/bin/nvcc" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT_STAMP" ]]; then
  log "installing CUDA 13.0 wheels into $PIP_DIR"
  rm -rf "$PIP_DIR" "$PIP_DIR.tmp"
  mkdir -p "$CUDA_DIR"
  # --no-deps: the pins above are the full set; --target: a plain folder, no venv.
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --target "$PIP_DIR.tmp" $WANT_STAMP
  mv "$PIP_DIR.tmp" "$PIP_DIR"
  echo "$WANT_STAMP" > "$STAMP"
fi

# ---- 2. unversioned dev symlinks so `-lfoo` resolves ---------------------------
for so in libcudart.so.13 libnvrtc.so.13 libcurand.so.10 libcublas.so.13 libcublasLt.so.13; do
  ln -sfn "$so" "$CUDA_ROOT/lib/${so%.so.*}.so"
done

export CUDA_HOME="$CUDA_ROOT"
export PATH="$CUDA_ROOT/bin:$PATH"
nvcc --version | grep -q 'release 13.0' || { log "unexpected nvcc: $(nvcc --version | tail -2)"; exit 1; }

# ---- 3. link-time stub libcuda.so (SONAME libcuda.so.1) ------------------------
# Find cudarc's sources for the crate(s) being built; `cargo metadata` resolves (and
# downloads) dependencies but compiles nothing. --all-features so that cudarc shows
# up whichever feature of whichever member pulls candle's cuda in.
CARGO_ARGS=("$@")
META_ARGS=()
for ((i = 0; i < ${#CARGO_ARGS[@]}; i++)); do
  case "${CARGO_ARGS[$i]}" in
    --manifest-path) META_ARGS+=(--manifest-path "${CARGO_ARGS[$((i + 1))]}") ;;
    --manifest-path=*) META_ARGS+=("${CARGO_ARGS[$i]}") ;;
  esac
done
if [[ ${#META_ARGS[@]} -eq 0 ]]; then META_ARGS=(--manifest-path "$REPO_ROOT/Cargo.toml"); fi
METADATA="$(cargo metadata --format-version 1 --all-features "${META_ARGS[@]}")"
# crate_file NAME PATH: PATH inside the sources of dependency NAME (empty if absent).
crate_file() {
  python3 -c 'import json,sys,os
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == sys.argv[1]:
        print(os.path.join(os.path.dirname(p["manifest_path"]), sys.argv[2]))' "$1" "$2" <<< "$METADATA"
}
CUDARC_SYS="$(crate_file cudarc src/driver/sys/mod.rs)"
if [[ -z "$CUDARC_SYS" ]]; then
  log "cudarc is not in the dependency graph: is the cuda feature wired to candle?"; exit 1
fi
STUB_DIR="$CUDA_ROOT/lib/stubs"
mkdir -p "$STUB_DIR"
# cudarc wraps each driver call as `load::<_F>("cuName")` (dynamic-loading path) next
# to an `extern "C" { fn cuName(...) }` (dynamic-linking path): take the names.
# shellcheck disable=SC2086
grep -ho 'load::<_F>("cu[A-Za-z0-9_]*")' $CUDARC_SYS | sed 's/.*("\(.*\)")/\1/' | sort -u > "$STUB_DIR/libcuda.syms.new"
if [[ ! -f "$STUB_DIR/libcuda.so" ]] || ! cmp -s "$STUB_DIR/libcuda.syms.new" "$STUB_DIR/libcuda.syms"; then
  log "building link-time stub libcuda.so ($(wc -l < "$STUB_DIR/libcuda.syms.new") symbols)"
  # 999 = CUDA_ERROR_UNKNOWN, in case the stub were ever loaded by mistake.
  sed 's/.*/int &(void) { return 999; }/' "$STUB_DIR/libcuda.syms.new" > "$STUB_DIR/libcuda_stub.c"
  gcc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$STUB_DIR/libcuda.so" "$STUB_DIR/libcuda_stub.c"
  mv "$STUB_DIR/libcuda.syms.new" "$STUB_DIR/libcuda.syms"
else
  rm -f "$STUB_DIR/libcuda.syms.new"
fi

# ---- 3b. CUTLASS for the flash-attn feature ------------------------------------
# candle-flash-attn's build.rs asks cudaforge for CUTLASS at one pinned commit, and
# cudaforge git-clones it from GitHub into $CUDAFORGE_HOME/git/checkouts/
# cutlass-<first 16 hex of the commit>, unless a checkout at that commit is already
# there. Where GitHub cannot be reached, CUTLASS_GIT names a local clone (any clone
# holding the commit) and we seed that cache from it. The 53 kernels take long to
# compile, so they are kept in a build dir of their own that survives `cargo clean`,
# and nvcc runs one job per core (cudaforge uses half the cores otherwise).
if [[ ",${FEATURES// /,}," == *",flash-attn,"* ]]; then
  FLASH_BUILD_RS="$(crate_file candle-flash-attn build.rs)"
  CUTLASS_COMMIT="$(sed -n 's/^const CUTLASS_COMMIT: &str = "\([0-9a-f]*\)";/\1/p' "$FLASH_BUILD_RS")"
  [[ -n "$CUTLASS_COMMIT" ]] || { log "no CUTLASS_COMMIT in $FLASH_BUILD_RS"; exit 1; }
  export CUDAFORGE_HOME="$CUDA_DIR/cudaforge"
  CUTLASS_DEST="$CUDAFORGE_HOME/git/checkouts/cutlass-${CUTLASS_COMMIT:0:16}"
  if [[ "$(git -C "$CUTLASS_DEST" rev-parse HEAD 2>/dev/null)" != "$CUTLASS_COMMIT" ]]; then
    CUTLASS_GIT="${CUTLASS_GIT:-https://github.com/NVIDIA/cutlass.git}"
    log "checking out CUTLASS $CUTLASS_COMMIT from $CUTLASS_GIT"
    rm -rf "$CUTLASS_DEST"
    mkdir -p "$(dirname "$CUTLASS_DEST")"
    git clone --quiet --no-checkout "$CUTLASS_GIT" "$CUTLASS_DEST"
    # Only the headers, as cudaforge checks out (a snapshot may lack large media files).
    git -C "$CUTLASS_DEST" sparse-checkout set include tools/util/include
    git -C "$CUTLASS_DEST" checkout --quiet "$CUTLASS_COMMIT"
  fi
  export CANDLE_FLASH_ATTN_BUILD_DIR="${FLASH_ATTN_BUILD_DIR:-$CUDA_DIR/flash-attn-build}"
  mkdir -p "$CANDLE_FLASH_ATTN_BUILD_DIR"
  export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
fi

# ---- 4. build ------------------------------------------------------------------
FEATURE_ARGS=()
if [[ -n "$FEATURES" ]]; then FEATURE_ARGS=(--features "$FEATURES"); fi
log "cargo $CARGO_SUBCOMMAND --release ${FEATURE_ARGS[*]} ${CARGO_ARGS[*]} (CARGO_TARGET_DIR=$CARGO_TARGET_DIR, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)"
EXES_FILE="$(mktemp)"
trap 'rm -f "$EXES_FILE"' EXIT
# shellcheck disable=SC2086
cargo $CARGO_SUBCOMMAND --release "${FEATURE_ARGS[@]}" "${CARGO_ARGS[@]}" --message-format=json-render-diagnostics |
  python3 -c 'import json,sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])' > "$EXES_FILE"

# ---- 5. collect, strip, check --------------------------------------------------
mkdir -p "$GPU_OUT"
while read -r exe; do
  [[ -n "$exe" ]] || continue
  dst="$GPU_OUT/$(basename "$exe")"
  cp -f "$exe" "$dst"
  strip "$dst"
  log "$dst: $(du -h "$dst" | cut -f1)"
  log "  NEEDED: $(readelf -d "$dst" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
  log "  newest glibc symbol: $(objdump -T "$dst" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
done < "$EXES_FILE"
log "total in $GPU_OUT: $(du -sh "$GPU_OUT" | cut -f1) (keep what you carry under 60 MB)"
