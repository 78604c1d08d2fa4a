#!/usr/bin/env bash
# Creates the Python environment used to generate reference fixtures (see README.md here):
# a git-ignored venv at scripts/reference/.venv with pinned torch, transformers and
# sentence-transformers. Idempotent: does nothing when the venv already has the pinned versions.
#
# How torch is installed (CPU use only):
#   PyPI is the only reachable index, and PyPI's Linux x86_64 torch wheel is the CUDA build; its
#   default dependency set adds ~4 GB of nvidia-*/triton/cuda-* wheels (a full install is ~5.3 GB).
#   Skipping all nvidia-* wheels does not work: torch/lib/libtorch_cuda.so, libtorch_python.so and
#   libtorch_cpu.so list cudart, cublas(Lt), cudnn, cufft, cufile, cupti, cusparse, cusparseLt,
#   nccl, nvrtc and nvshmem as DT_NEEDED, so `import torch` fails without them. So every package
#   is installed with --no-deps from the exact list below, which keeps the nvidia libraries that
#   `import torch` links against and leaves out what CPU inference never loads: triton (~1 GB,
#   torch.compile GPU kernels), nvidia-cusolver (only for the lazily loaded
#   libtorch_cuda_linalg.so), nvidia-nvjitlink, nvidia-nvtx, nvidia-cuda-cccl (headers),
#   cuda-toolkit (meta package), cuda-bindings and cuda-pathfinder. Result: ~4 GB instead of
#   ~5.3 GB. `pip check` therefore reports those as missing; that is expected. The list is the
#   full resolution of torch==2.15.0 transformers==5.23.0 sentence-transformers==6.2.0 on
#   CPython 3.11 / Linux x86_64 minus the packages named above; the smoke test at the end
#   checks that the result imports and runs.
# For smollm2_fixture.py (transformers' GGUF support) the list also pins gguf, accelerate (which
# transformers requires to load a GGUF model) and psutil (accelerate's one dependency not already
# here); gguf's `requests` dependency is left out: gguf imports it only to read remote files.
# For qwen2vl_fixture.py (Qwen2-VL, GME, ColQwen2) the list also pins pillow (transformers' PIL image
# processor and the test images), torchvision (transformers 5's Qwen2-VL processor classes import it:
# the video processor the processor insists on, and the module colpali-engine takes smart_resize from),
# peft (the LoRA adapter; 0.20.0 is the one version that both transformers 5.23, >= 0.20.0, and
# colpali-engine 0.3.18, < 0.21, accept) and colpali-engine (its ColQwen2 and ColQwen2Processor are the
# ColQwen2 reference). colpali-engine 0.3.18 declares torch<2.14 and `requests`; neither matters for
# the classes used (pip check reports both; the fixture script checks its results independently).
# torchvision 0.29.2 declares torch>=2.14 and is the newest on PyPI; its deps (numpy, pillow) are here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
python=${PYTHON:-python3}

torch_version=2.15.0
transformers_version=5.23.0
st_version=6.2.0
gguf_version=0.19.0
accelerate_version=1.15.0
pillow_version=13.0.0
torchvision_version=0.29.2
peft_version=0.20.0
colpali_version=0.3.18

requirements=$(cat <<EOF
torch==$torch_version
transformers==$transformers_version
sentence-transformers==$st_version
gguf==$gguf_version
accelerate==$accelerate_version
psutil==7.2.2
pillow==$pillow_version
torchvision==$torchvision_version
peft==$peft_version
colpali-engine==$colpali_version
nvidia-cublas==13.4.1.3
nvidia-cuda-cupti==13.2.86
nvidia-cuda-nvrtc==13.2.86
nvidia-cuda-runtime==13.2.86
nvidia-cudnn-cu13==9.26.0.51
nvidia-cufft==12.2.0.57
nvidia-cufile==1.17.1.22
nvidia-cusparse==12.7.10.12
nvidia-cusparselt-cu13==0.8.1
nvidia-nccl-cu13==2.30.7
nvidia-nvshmem-cu13==3.7.2
filelock==4.2.12
fsspec==2026.9.0
Jinja2==3.1.6
MarkupSafe==3.0.4
mpmath==1.3.0
networkx==3.6.1
setuptools==84.2.1
sympy==1.14.0
typing_extensions==4.16.0
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
click==8.5.1
cloudpickle==3.1.2
h11==0.16.0
hf-xet==1.8.0
httpcore2==2.16.2
httpx2==2.16.2
huggingface_hub==2.4.0
idna==3.20
joblib==1.6.0
markdown-it-py==4.3.0
mdurl==0.1.2
narwhals==2.29.0
numpy==2.4.6
packaging==26.3
pydantic==2.14.3
pydantic_core==2.50.4
Pygments==2.21.0
PyYAML==6.0.3
regex==2026.11.15
rich==15.0.0
safetensors==0.8.0
scikit-learn==1.9.1
scipy==1.17.1
shellingham==1.5.4
threadpoolctl==3.8.0
tokenizers==0.23.3
tqdm==4.70.1
truststore==0.10.5
typer==0.29.2
typing-inspection==0.4.5
EOF
)

# Prints nothing and succeeds when the venv has the pinned versions of the main packages.
have_pins() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - "$torch_version" "$transformers_version" "$st_version" "$gguf_version" \
    "$accelerate_version" "$pillow_version" "$torchvision_version" "$peft_version" "$colpali_version" \
    <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
names = ["torch", "transformers", "sentence-transformers", "gguf", "accelerate", "pillow", "torchvision",
         "peft", "colpali-engine"]
want = dict(zip(names, sys.argv[1:]))
try:
    ok = all(version(name) == v for name, v in want.items())
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
}

if have_pins; then
  echo "reference venv already set up: $venv"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "creating venv $venv with $($python --version 2>&1) ..."
  "$python" -m venv "$venv"
fi

req_file=$(mktemp)
trap 'rm -f "$req_file"' EXIT
printf '%s\n' "$requirements" > "$req_file"

echo "installing pinned packages (about 4 GB once installed) ..."
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-deps --only-binary=:all: -r "$req_file"

echo "smoke test ..."
"$venv/bin/python" - <<'PY'
import torch, transformers, sentence_transformers, gguf, accelerate
import PIL, torchvision, peft, colpali_engine
from colpali_engine.models import ColQwen2, ColQwen2Processor
x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
assert float((x @ x.T).sum()) == 83.0
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"sentence-transformers {sentence_transformers.__version__}, accelerate {accelerate.__version__}")
PY
have_pins || { echo "error: pinned versions not found in $venv after install" >&2; exit 1; }
echo "reference venv ready: $venv ($(du -sh "$venv" | cut -f1))"
