#!/usr/bin/env bash
# Creates the Python environment used by parquet_fixtures.py (see README.md here): a git-ignored
# venv at scripts/reference/.venv-parquet with a pinned pyarrow and nothing else (pyarrow has no
# required dependencies; numpy/pandas are optional and not installed). Idempotent: does nothing when
# the venv already has the pinned version. About 150 MB (the manylinux wheel bundles Arrow C++).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv-parquet"
python=${PYTHON:-python3}

pyarrow_version=26.0.1

if [ -x "$venv/bin/python" ] && \
   [ "$("$venv/bin/python" -c 'import pyarrow; print(pyarrow.__version__)' 2>/dev/null)" = "$pyarrow_version" ]; then
  echo "parquet venv already set up: $venv"
  exit 0
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
  "pyarrow==$pyarrow_version"
"$venv/bin/python" -c 'import pyarrow, pyarrow.parquet; print("pyarrow", pyarrow.__version__)'
echo "parquet venv ready: $venv"
