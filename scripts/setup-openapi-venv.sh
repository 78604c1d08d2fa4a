#!/usr/bin/env bash
# Creates the Python environment that validates Folio's OpenAPI document (the server test
# `openapi_document_validates` uses it when present): a git-ignored venv at
# scripts/.venv-openapi with a pinned openapi-spec-validator and its dependencies, from PyPI.
# Idempotent: does nothing when the venv already has the pinned version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv-openapi"
python=${PYTHON:-python3}
version=0.9.0

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('openapi-spec-validator') != '$version')" 2>/dev/null; then
    exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "openapi-spec-validator==$version"
echo "openapi-spec-validator $version in $venv"
