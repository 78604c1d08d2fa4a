#!/usr/bin/env bash
# Creates the Python environment used by metrics_fixture.py (see README.md here): a git-ignored
# venv at scripts/reference/.venv-metrics with pinned pytrec-eval-terrier (trec_eval's measures,
# as a C extension) and ranx. Idempotent: does nothing when the venv already has the pinned versions.
#
# No torch. ranx imports numba/llvmlite, scipy, pandas, matplotlib/seaborn (plotting) and ir_datasets
# at module import time, so they cannot be left out; the venv is about 0.7 GB. Every package is
# installed with --no-deps from the exact list below: the full resolution of
# `pytrec-eval-terrier==0.5.11 ranx==0.3.21` on CPython 3.11 / Linux x86_64 (binary wheels only),
# so a later release of any dependency cannot change the fixture.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv-metrics"
python=${PYTHON:-python3}

pytrec_version=0.5.11
ranx_version=0.3.21
numba_version=0.68.1

requirements=$(cat <<EOF
pytrec-eval-terrier==$pytrec_version
ranx==$ranx_version
numba==$numba_version
cbor2==6.3.0
certifi==2026.10.18
charset-normalizer==3.5.2
contourpy==1.3.3
cramjam==2.14.0
cycler==0.12.1
fastparquet==2026.9.0
fonttools==4.68.0
fsspec==2026.9.0
idna==3.20
ir_datasets==0.6.3
kiwisolver==1.5.1
llvmlite==0.50.0
lxml==6.1.3
lz4==4.4.5
markdown-it-py==4.3.0
matplotlib==3.11.2
mdurl==0.1.2
numpy==2.4.6
orjson==3.13.0
packaging==26.3
pandas==3.1.1
pillow==13.0.0
Pygments==2.21.0
pyparsing==3.3.3
python-dateutil==4.0.0
PyYAML==6.0.3
requests==2.34.2
rich==15.0.0
scipy==1.17.1
seaborn==0.13.2
tabulate==0.10.0
tqdm==4.70.1
tzdata==2026.6
urllib3==2.8.0
EOF
)

# Succeeds silently when the venv has the pinned versions of the main packages.
have_pins() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - "$pytrec_version" "$ranx_version" "$numba_version" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
want = dict(zip(["pytrec-eval-terrier", "ranx", "numba"], sys.argv[1:]))
try:
    ok = all(version(name) == v for name, v in want.items())
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
}

if have_pins; then
  echo "metrics venv already set up: $venv"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "creating venv $venv with $($python --version 2>&1) ..."
  "$python" -m venv "$venv"
fi

req_file=$(mktemp)
trap 'rm -f "$req_file"' EXIT
printf '%s\n' "$requirements" > "$req_file"

echo "installing pinned packages (about 0.7 GB once installed) ..."
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-deps --only-binary=:all: -r "$req_file"

echo "smoke test ..."
"$venv/bin/python" - <<'PY'
import warnings
warnings.simplefilter("ignore")  # numba's NumbaTypeSafetyWarning from ranx's prange loops
import pytrec_eval
from ranx import Qrels, Run, evaluate
qrels = {"q": {"d1": 1, "d2": 0}}
run = {"q": {"d1": 0.5, "d2": 0.9}}
te = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)["q"]["recip_rank"]
rx = evaluate(Qrels.from_dict(qrels), Run.from_dict(run), "mrr")
assert te == 0.5 and abs(rx - 0.5) < 1e-12, (te, rx)
print(f"pytrec_eval {pytrec_eval.__version__}, ranx ok")
PY
have_pins || { echo "error: pinned versions not found in $venv after install" >&2; exit 1; }
echo "metrics venv ready: $venv ($(du -sh "$venv" | cut -f1))"
