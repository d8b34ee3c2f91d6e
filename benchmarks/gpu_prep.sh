#!/usr/bin/env bash
# Gets ready, on a machine WITH network, what benchmarks/gpu_notebooks.sh needs on a lent GPU
# machine, which has no network, torch and the scientific stack but no Jupyter tools:
#   .gpudata/omniglot/  the Omniglot files htlib reads (the two official zips, the vinyals split
#                       files, their licences), copied from $HTLIB_DATA/omniglot and checked
#                       against its SHA256SUMS;
#   .whl/               cp312 manylinux x86-64 wheels of papermill, nbval, ipykernel and ipywidgets
#                       (htlib's progress bars use it inside a kernel) with every dependency pip
#                       resolves for them, less the packages the GPU image already has.
# Both folders are git-ignored and travel only when the device call names them in `carry`
# (see docs/gpu.md). Run from the repository root:   bash benchmarks/gpu_prep.sh
# Re-running is safe: data files are copied only when they differ, and .whl/ is rebuilt from a
# fresh resolve (so it never holds two versions of a package).
# Settings: HTLIB_DATA (default ../shared/data), PIP_PYTHON (a Python 3.12 to run pip with:
# pip evaluates dependency markers with the interpreter that runs it; default: the first
# python3.12 found, else python3), WHEEL_PACKAGES, CARRY_ANYWAY (names to keep even though the
# image has them, when its version may be too old for a requirement printed below; see below).
# The wheels allow glibc up to 2.39: the image's Python 3.12.3 is Ubuntu 24.04's (glibc 2.39).
set -euo pipefail
cd "$(dirname "$0")/.."

# ------------------------------------------------------------------ data
SRC=${HTLIB_DATA:-../shared/data}/omniglot
DST=.gpudata/omniglot
NEEDED="images_background.zip images_evaluation.zip splits/vinyals/train.txt splits/vinyals/val.txt
splits/vinyals/test.txt splits/vinyals/trainval.txt"
EXTRA="LICENSE README.md SHA256SUMS splits/vinyals/LICENSE"
[ -d "$SRC" ] || { echo "no Omniglot folder at $SRC: set HTLIB_DATA to the folder holding omniglot/"; exit 1; }
for f in $NEEDED $EXTRA; do
  if [ ! -f "$SRC/$f" ]; then
    case " $EXTRA " in *" $f "*) continue ;; esac
    echo "missing in $SRC: $f"; exit 1
  fi
  cmp -s "$SRC/$f" "$DST/$f" || install -D -m 0644 "$SRC/$f" "$DST/$f"
done
if [ -f "$DST/SHA256SUMS" ]; then
  (cd "$DST" && sha256sum --quiet -c SHA256SUMS) || { echo "checksum mismatch in $DST"; exit 1; }
  echo "data: $DST matches its SHA256SUMS"
else
  echo "data: no SHA256SUMS beside the source; copied unchecked (htlib checks the content when it loads)"
fi

# ------------------------------------------------------------------ wheels
# What the GPU image (/opt/torch/.venv, Python 3.12.3) already holds, as listed in the device
# notes on 2026-11-17; names normalised (lower case, runs of - _ . as one -).
ON_DEVICE="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio
h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime
onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint
packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect
urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"
PACKAGES=${WHEEL_PACKAGES:-papermill nbval ipykernel ipywidgets}
# Carried although the image has them: ipython asks for psutil>=7 and jupyter_client for
# typing-extensions>=4.13 (both 2025 releases), and the image's versions of these two are not on
# record; newer versions of both keep their old interfaces, so shadowing the image's is safe.
CARRY_ANYWAY=${CARRY_ANYWAY-psutil typing-extensions}

if [ -z "${PIP_PYTHON:-}" ]; then
  candidates=(python3.12)
  command -v pyenv >/dev/null && candidates+=("$(pyenv root)"/versions/3.12*/bin/python3.12)
  for candidate in "${candidates[@]}"; do
    "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null \
      && { PIP_PYTHON=$candidate; break; }
  done
fi
if [ -z "${PIP_PYTHON:-}" ]; then
  PIP_PYTHON=python3
  echo "warning: no python3.12 found; pip runs under $(python3 --version) and may judge version markers by it"
fi
echo "wheels: resolving $PACKAGES for cp312 manylinux x86_64 with $("$PIP_PYTHON" --version)"

platforms=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64)
for n in 5 12 $(seq 17 39); do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
"$PIP_PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version 3.12 \
  --implementation cp --abi cp312 "${platforms[@]}" -d "$stage" $PACKAGES \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)  # noise of a local pip.conf

norm() { echo "$1" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/-/g'; }
mkdir -p .whl
rm -f .whl/*.whl
kept=() dropped=()
for w in "$stage"/*.whl; do
  name=$(norm "$(basename "$w" | cut -d- -f1)")
  if [[ " $(echo $ON_DEVICE) " == *" $name "* && " $CARRY_ANYWAY " != *" $name "* ]]; then
    dropped+=("$name")
  else
    kept+=("$name")
    mv "$w" .whl/
  fi
done
echo "wheels: kept ${#kept[@]}: ${kept[*]}"
echo "wheels: left out ${#dropped[@]}, the image has them: ${dropped[*]}"
dups=$(for n in "${kept[@]}"; do echo "$n"; done | sort | uniq -d)
[ -z "$dups" ] || { echo "two versions of: $dups"; exit 1; }

# what the kept wheels ask of the packages left out: the image's versions must satisfy these
# (benchmarks/gpu_notebooks.sh checks them there; CARRY_ANYWAY=name re-adds one)
"$PIP_PYTHON" - "${dropped[@]}" <<'PY'
import glob, re, sys, zipfile
left_out = set(sys.argv[1:])
for wheel in sorted(glob.glob(".whl/*.whl")):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = line.split(":", 1)[1].strip()
        if "extra ==" in req:
            continue
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", req).group(0).lower())
        if name in left_out:
            print(f"  needs from the image: {wheel.split('/')[-1].split('-')[0]} -> {req}")
PY

du_mib() { du -sb "$@" | awk '{s += $1} END {printf "%.1f MiB", s / 1048576}'; }
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "sizes: .whl $(du_mib .whl) ($(ls .whl/*.whl | wc -l) wheels), .gpudata $(du_mib .gpudata)," \
  "together $(du_mib .whl .gpudata); with the working tree that travels ($((tree / 1048576)) MiB)" \
  "$(awk "BEGIN {printf \"%.1f\", ($tree + $(du -sb .whl .gpudata | awk '{s += $1} END {print s}')) / 1048576}") MiB of the 64 MiB limit"
