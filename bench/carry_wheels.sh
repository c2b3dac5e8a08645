#!/usr/bin/env bash
# The Python packages the GPU machine lacks, as Python 3.12 manylinux x86_64 wheels, for the device calls of
# bench/time_to_report.py and bench/train_throughput.py (the GPU machine has no network and lacks bitsandbytes,
# datasets, snakemake, orjson, jsonschema, rouge-score, gguf and trl: bench/README.md).
#
#   bash bench/carry_wheels.sh            # here (network), from the repository root or anywhere in it
#
# Writes .whl/*.whl (the workflow and the benchmarks: bitsandbytes, datasets, snakemake, orjson, jsonschema,
# rouge-score, gguf, trl and what they need) and .whl/unsloth/*.whl (Unsloth and what it needs beyond the
# first set; installed apart, for the Unsloth variant's own process). .whl is git-ignored. Then it checks
# every wheel's Requires-Dist (markers evaluated for CPython 3.12 on Linux x86_64) against the packages the
# GPU image has (GPU_IMAGE below) and the wheels carried, fails naming any
# requirement neither covers, and prints the sizes. On the GPU machine (carry: .whl):
#   python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
#   python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site-unsloth .whl/unsloth/*.whl
set -euo pipefail
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
DEST="$ROOT/.whl"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
PLATFORMS=""
for n in 1 2014 2_5 2_17 2_24 2_27 2_28 2_31 2_34 2_35; do
  case $n in 1 | 2014) PLATFORMS+=" --platform manylinux${n}_x86_64" ;; *) PLATFORMS+=" --platform manylinux_${n}_x86_64" ;; esac
done
PIP_DOWNLOAD="python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS"

# The versions this repository's requirements.txt pins where it pins one, else those installed and tested here.
MAIN=(
  bitsandbytes==0.50.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 orjson==3.13.0
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==0.30.0
  gguf==0.19.0 nltk==3.10.4 defusedxml==0.7.1 trl==1.15.0
  snakemake==9.27.1 platformdirs==4.14.9 immutables==0.21 ConfigArgParse==1.9.0 docutils==0.22.4
  GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3 humanfriendly==10.0 nbformat==5.11.1 fastjsonschema==2.22.3
  jupyter_core==5.9.1 traitlets==5.15.0 PuLP==3.3.2 tenacity==9.2.1 smart_open==7.7.1
  snakemake-interface-common==1.23.0 snakemake-interface-executor-plugins==9.4.0
  snakemake-interface-logger-plugins==2.1.0 snakemake-interface-report-plugins==1.3.0
  snakemake-interface-scheduler-plugins==2.0.2 snakemake-interface-storage-plugins==4.4.1
  throttler==1.2.3 yte==1.9.4 dpath==2.2.0 argparse-dataclass==2.0.0 conda-inject==1.3.2
  sqlmodel==0.0.37 SQLAlchemy==2.0.58 greenlet==3.5.6 pydantic==2.13.4 pydantic_core==2.46.4
  annotated-types==0.7.0 typing-inspection==0.4.2
)
MAIN_SDIST=(rouge-score==0.1.2 connection_pool==0.0.3) # no wheels on PyPI: built here (pure Python)
# trl is in MAIN at 1.15.0, the newest that unsloth 2026.10.9 accepts (trl<=1.15.0), so both variants use it.
UNSLOTH=(
  unsloth==2026.10.9 unsloth_zoo==2026.10.9 torchao==0.18.0 cut_cross_entropy==25.1.1 tyro==1.0.17
  docstring-parser==0.17.0 typeguard==4.4.4 msgspec==0.23.0 hf_transfer==0.1.9 diffusers==0.42.1
  importlib_metadata==8.7.0 structlog==26.1.0 json5==0.17.3 nest-asyncio==1.6.0
)

rm -rf "$DEST"
mkdir -p "$DEST/unsloth" "$STAGE/main" "$STAGE/unsloth"
$PIP_DOWNLOAD -d "$STAGE/main" "${MAIN[@]}"
python3 -m pip wheel -q --no-deps -w "$STAGE/main" "${MAIN_SDIST[@]}"
$PIP_DOWNLOAD -d "$STAGE/unsloth" "${UNSLOTH[@]}"

# Repack, leaving out what that machine never loads: bitsandbytes' libraries for other CUDA versions and ROCm
# (it loads libbitsandbytes_cuda130.so under torch cu130), PuLP's CBC solvers for other platforms, and
# unsloth's `studio` web app (26 MB of front-end assets; training never imports it). RECORD drops them too.
python3 - "$STAGE" "$DEST" <<'EOF'
import re
import sys
import zipfile
from pathlib import Path

stage, dest = Path(sys.argv[1]), Path(sys.argv[2])
DROP = {
    "bitsandbytes-": re.compile(r"bitsandbytes/libbitsandbytes_(cuda(?!130\.)\d+|rocm\d+)\.so$"),
    "pulp-": re.compile(r"pulp/solverdir/cbc/(?!linux/i64/)"),
    "unsloth-": re.compile(r"studio/"),
}
for wheel in sorted(stage.glob("*/*.whl")):
    out = dest / wheel.relative_to(stage)
    out = dest / wheel.name if wheel.parent.name == "main" else out
    drop = next((pattern for prefix, pattern in DROP.items() if wheel.name.startswith(prefix)), None)
    if drop is None:
        out.write_bytes(wheel.read_bytes())
        continue
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        dropped = 0
        for info in source.infolist():
            if drop.match(info.filename):
                dropped += 1
                continue
            data = source.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if not drop.match(line.split(",")[0])).encode()
            target.writestr(info, data)
    print(f"{wheel.name}: left out {dropped} files ({wheel.stat().st_size >> 20} MiB -> {out.stat().st_size >> 20} MiB)")
EOF

# Every requirement of every carried wheel must be on the GPU image or carried (main set, and main + unsloth).
python3 - "$DEST" <<'EOF'
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# The Python packages the GPU machine's image ('cuda') already has, as its provider listed them on 2026-11-17.
GPU_IMAGE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"""
ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
image = {canonicalize_name(name) for name in GPU_IMAGE.split()}
# Left out on purpose: unsloth imports xformers in a try block and uses PyTorch attention on ModuleNotFoundError
# (unsloth/models/_utils.py); xformers' wheels are built against one torch and CUDA, not the image's 2.11 cu130.
NOT_CARRIED = {"xformers"}


def requirements(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(ENV):
            yield canonicalize_name(requirement.name), str(requirement)


def carried(folder: Path) -> dict:
    return {canonicalize_name(wheel.name.split("-")[0]): wheel for wheel in folder.glob("*.whl")}


dest = Path(sys.argv[1])
main = carried(dest)
unsloth = {**main, **carried(dest / "unsloth")}
missing = []
for wheels, available in ((main, main), (carried(dest / "unsloth"), unsloth)):
    for name, wheel in sorted(wheels.items()):
        for need, text in requirements(wheel):
            if need not in image and need not in available and need not in NOT_CARRIED:
                missing.append(f"{wheel.name}: {text}")
overlap = sorted(set(main) & image)
if overlap:
    print("carried although the image has them (the carried version wins on PYTHONPATH):", ", ".join(overlap))
if missing:
    sys.exit("requirements neither on the GPU image nor carried:\n  " + "\n  ".join(missing))
print(f"requirements checked: {len(main)} wheels in .whl, {len(unsloth) - len(main)} in .whl/unsloth; none missing")
EOF

du -sh --apparent-size --exclude unsloth "$DEST"; du -sh --apparent-size "$DEST/unsloth"
echo "total bytes: $(find "$DEST" -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s}')"
