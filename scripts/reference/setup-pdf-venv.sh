#!/usr/bin/env bash
# Creates the Python environment used by rtl_fixture.py (see README.md here): a git-ignored venv
# at scripts/reference/.venv-pdf with a pinned reportlab (and pillow, which it needs).
# Idempotent: does nothing when the venv already has the pinned version. About 30 MB.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv-pdf"
python=${PYTHON:-python3}

reportlab_version=5.1.0
pillow_version=13.0.0
charset_version=3.5.2

if [ -x "$venv/bin/python" ] && \
   [ "$("$venv/bin/python" -c 'import reportlab; print(reportlab.Version)' 2>/dev/null)" = "$reportlab_version" ]; then
  echo "pdf venv already set up: $venv"
  exit 0
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
  "reportlab==$reportlab_version" "pillow==$pillow_version" "charset-normalizer==$charset_version"
"$venv/bin/python" -c 'import reportlab; print("reportlab", reportlab.Version)'
echo "pdf venv ready: $venv"
