#!/usr/bin/env bash
# Creates the Python environment of the `folio bench ann` peers (scripts/bench/ann_peer.py): a
# git-ignored venv at scripts/bench/.venv-ann with pinned faiss-cpu, hnswlib and numpy from PyPI.
# Idempotent: does nothing when the venv already has the pinned versions.
#
# faiss-cpu ships binary wheels (its one other dependency is packaging). hnswlib 0.8.0 ships only
# a source distribution: it is compiled here (g++ needed) against the pinned numpy and pybind11,
# without build isolation so that the build tools are the pinned ones too. Its setup.py builds with
# -O3 -march=native, so its distance kernels use this machine's vector instructions, as faiss's
# AVX2/AVX-512 builds and Folio's usearch do. About 100 MB once installed.
#
# Then: cargo run --release -p folio -- bench ann ... --peer scripts/bench/.venv-ann/bin/python
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv-ann"
python=${PYTHON:-python3}

faiss_version=1.15.1
hnswlib_version=0.8.0
numpy_version=2.4.6

build_requirements=$(cat <<EOF
numpy==$numpy_version
packaging==26.3
pybind11==3.1.0
setuptools==84.2.1
wheel==0.48.0
EOF
)

# Succeeds silently when the venv has the pinned versions and they import.
have_pins() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - "$faiss_version" "$hnswlib_version" "$numpy_version" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
want = dict(zip(["faiss-cpu", "hnswlib", "numpy"], sys.argv[1:]))
try:
    ok = all(version(name) == v for name, v in want.items())
    import faiss, hnswlib, numpy  # noqa: F401
except (PackageNotFoundError, ImportError):
    ok = False
sys.exit(0 if ok else 1)
PY
}

if have_pins; then
  echo "ann bench venv already set up: $venv"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "creating venv $venv with $($python --version 2>&1) ..."
  "$python" -m venv "$venv"
fi

req_file=$(mktemp)
trap 'rm -f "$req_file"' EXIT
printf '%s\n' "$build_requirements" > "$req_file"

echo "installing numpy and the build tools ..."
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-deps --only-binary=:all: -r "$req_file"
echo "installing faiss-cpu $faiss_version (wheel) ..."
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-deps --only-binary=:all: "faiss-cpu==$faiss_version"
echo "building hnswlib $hnswlib_version from source (a minute or two) ..."
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-deps --no-build-isolation --no-binary=hnswlib "hnswlib==$hnswlib_version"

echo "smoke test ..."
"$venv/bin/python" - <<'PY'
import faiss, hnswlib, numpy as np
x = np.eye(4, 8, dtype=np.float32)
f = faiss.IndexHNSWFlat(8, 4, faiss.METRIC_INNER_PRODUCT)
f.add(x)
h = hnswlib.Index(space="ip", dim=8)
h.init_index(max_elements=4, M=4, ef_construction=8)
h.add_items(x)
assert f.search(x[:1], 1)[1][0][0] == 0 and h.knn_query(x[:1], k=1)[0][0][0] == 0
print(f"faiss {faiss.__version__}, hnswlib ok, numpy {np.__version__}")
PY
have_pins || { echo "error: pinned versions not found in $venv after install" >&2; exit 1; }
echo "ann bench venv ready: $venv ($(du -sh "$venv" | cut -f1))"
