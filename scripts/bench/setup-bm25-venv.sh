#!/usr/bin/env bash
# Creates the Python environment of the `folio bench bm25` peer (scripts/bench/bm25_peer.py): a
# git-ignored venv at scripts/bench/.venv-bm25 with pinned bm25s, PyStemmer, numpy and scipy from
# PyPI. Idempotent: does nothing when the venv already has the pinned versions.
#
# All four are binary wheels (bm25s is pure Python; its one hard dependency is numpy, and scipy is
# what its docs name beside numpy for the default numpy backend). Installed with --no-deps so that
# nothing unpinned comes in: without tqdm bm25s shows no progress bars, without numba or jax it
# keeps to its numpy backend, the one the peer measures. About 250 MB once installed.
#
# Then: cargo run --release -p folio -- bench bm25 ... --peer scripts/bench/.venv-bm25/bin/python
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv-bm25"
python=${PYTHON:-python3}

bm25s_version=0.3.16
pystemmer_version=3.1.0
numpy_version=2.4.6
scipy_version=1.17.1

# Succeeds silently when the venv has the pinned versions and they import.
have_pins() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - "$bm25s_version" "$pystemmer_version" "$numpy_version" "$scipy_version" \
    <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
want = dict(zip(["bm25s", "PyStemmer", "numpy", "scipy"], sys.argv[1:]))
try:
    ok = all(version(name) == v for name, v in want.items())
    import bm25s, Stemmer, numpy, scipy.sparse  # noqa: F401
except (PackageNotFoundError, ImportError):
    ok = False
sys.exit(0 if ok else 1)
PY
}

if have_pins; then
  echo "bm25 bench venv already set up: $venv"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "creating venv $venv with $($python --version 2>&1) ..."
  "$python" -m venv "$venv"
  # Keeps the venv out of git even where .gitignore does not name it (as venv does from 3.13 on).
  echo '*' > "$venv/.gitignore"
fi

echo "installing bm25s $bm25s_version, PyStemmer $pystemmer_version, numpy $numpy_version," \
  "scipy $scipy_version (wheels) ..."
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-deps --only-binary=:all: \
  "bm25s==$bm25s_version" "PyStemmer==$pystemmer_version" \
  "numpy==$numpy_version" "scipy==$scipy_version"

echo "smoke test ..."
"$venv/bin/python" - <<'PY'
import math
import bm25s, Stemmer, numpy as np, scipy
stemmer = Stemmer.Stemmer("english")
docs = ["The cat.", "A dog ran far away", "Cats and dogs ran"]
tok = lambda t: bm25s.tokenize(t, stopwords=None, stemmer=stemmer, show_progress=False)
index = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
index.index(tok(docs), show_progress=False)
ids, scores = index.retrieve(tok(["cat"]), k=1, show_progress=False)
# "cat" and "cats" stem alike: df 2 of 3 docs. Doc 0 has 2 tokens and avgdl is (2 + 4 + 4) / 3
# ("A" is dropped: the token pattern keeps words of 2+ characters). bm25s's lucene variant
# leaves out the (k1 + 1) factor of Lucene's term frequency part.
idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
expected = idf * 1 / (1 + 1.2 * (1 - 0.75 + 0.75 * 2 / (10 / 3)))
assert ids[0][0] == 0 and math.isclose(scores[0][0], expected, rel_tol=1e-5), (ids, scores)
print(f"bm25s {bm25s.__version__}, PyStemmer ok, numpy {np.__version__}, scipy {scipy.__version__}")
PY
have_pins || { echo "error: pinned versions not found in $venv after install" >&2; exit 1; }
echo "bm25 bench venv ready: $venv ($(du -sh "$venv" | cut -f1))"
