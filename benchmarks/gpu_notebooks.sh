#!/usr/bin/env bash
# The notebooks on a lent GPU machine: `make run` and `make nbval` there, offline. Installs the
# Jupyter wheels that benchmarks/gpu_prep.sh put in .whl/ (the image has torch but no papermill,
# nbval or ipykernel), executes each notebook with papermill through the project's own command
# (`python -m htlib notebooks`, one notebook per call so that one failure does not hide the
# rest), then re-executes the executed copies under nbval as `make nbval` does, and the committed
# notebooks under strict nbval as `make nbval-committed` does.
#
# On the GPU machine, from the repository root, with .whl and .gpudata carried (docs/gpu.md):
#   bash benchmarks/gpu_notebooks.sh
# Settings: OUT (runs/gpu_notebooks), PROFILE (ci), DEVICE (cuda), DATASET (omniglot),
#   NOTEBOOKS (a glob; notebooks/0*.ipynb), PYTHON (python3), WHEELS (.whl; skip: use PYTHON's
#   own packages), SITE (/tmp/site), JOB_SECONDS (570: nbval is skipped, and a notebook is stopped,
#   when the time runs out), NBVAL (1; 0 skips it), ONLY_INSTALL=1 (install, check, stop).
# Into $OUT: notebooks/<name>.ipynb (the executed copies, parameters injected) and
# gpu_notebooks.log. Exit status 0 only when every notebook ran and nbval passed.
# Dry run on a CPU, with a venv that has papermill and nbval:
#   OUT=/tmp/gn DEVICE=cpu PYTHON=.venv/bin/python WHEELS=skip HTLIB_DATA=../shared/data \
#     NOTEBOOKS="notebooks/01_*.ipynb" bash benchmarks/gpu_notebooks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_notebooks}
PROFILE=${PROFILE:-ci}
DEVICE=${DEVICE:-cuda}
DATASET=${DATASET:-omniglot}
NOTEBOOKS=${NOTEBOOKS:-notebooks/0*.ipynb}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
JOB_SECONDS=${JOB_SECONDS:-570}
NBVAL=${NBVAL:-1}
mkdir -p "$OUT/notebooks"
OUT=$(cd "$OUT" && pwd)
# absolute: the kernels run in notebooks/ (papermill) and in $OUT/notebooks (nbval)
HTLIB_DATA=${HTLIB_DATA:-.gpudata}
HTLIB_DATA=$(cd "$HTLIB_DATA" && pwd) || { echo "no data folder $HTLIB_DATA: run benchmarks/gpu_prep.sh"; exit 2; }
JUP=${TMPDIR:-/tmp}/htlib-jupyter  # a private kernelspec, runtime and IPython folder
mkdir -p "$JUP"
export HTLIB_DATA HTLIB_CACHE=${HTLIB_CACHE:-/tmp/htlib-cache} HTLIB_OFFLINE=1
export MPLBACKEND=Agg PYTHONUNBUFFERED=1 JUPYTER_PLATFORM_DIRS=1
export JUPYTER_PATH=$JUP/share/jupyter JUPYTER_RUNTIME_DIR=$JUP/runtime IPYTHONDIR=$JUP/ipython
left() { echo $((JOB_SECONDS - SECONDS)); }

{
  date -u
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  if [ "$WHEELS" = skip ]; then
    export PYTHONPATH=$PWD
    echo "== wheels: skipped, using the packages of $PY"
  else
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run benchmarks/gpu_prep.sh here and carry .whl"; exit 2; }
    echo "== wheels: installing $(ls "$WHEELS"/*.whl | wc -l) from $WHEELS into $SITE"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --root-user-action=ignore \
      --target "$SITE" \
      "$WHEELS"/*.whl || exit 2
    export PYTHONPATH=$SITE:$PWD
    # every requirement of the installed wheels, met by them or by the image? (a warning only)
    $PY - "$SITE" <<'PY'
import importlib.metadata as md, sys
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
problems = []
for dist in md.distributions(path=[sys.argv[1]]):
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            found = md.version(req.name)
        except md.PackageNotFoundError:
            problems.append(f"{dist.metadata['Name']} needs {req}: not installed")
            continue
        if not req.specifier.contains(found, prereleases=True):
            problems.append(f"{dist.metadata['Name']} needs {req}: found {found}")
print("\n".join(f"warning: {p}" for p in problems) or "requirements: all met")
PY
  fi
  $PY -m ipykernel install --prefix "$JUP" --name python3 --display-name "Python 3 (htlib)" >/dev/null || exit 2
  $PY - <<'PY' || exit 2
import importlib.metadata as md, sys
from jupyter_client.kernelspec import KernelSpecManager
print("python", sys.version.split()[0], sys.executable)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available())
except ImportError as exc:
    print("torch: not importable,", exc)  # fatal for the notebooks, not for ONLY_INSTALL
print(" ".join(f"{n} {md.version(n)}" for n in ("papermill", "nbclient", "nbformat", "ipykernel", "jupyter_client",
                                                 "pyzmq", "tornado", "ipywidgets", "nbval", "pytest")))
spec = KernelSpecManager().get_kernel_spec("python3")
print("kernel python3:", " ".join(spec.argv), "from", spec.resource_dir)
PY
  echo "PYTHONPATH=$PYTHONPATH HTLIB_DATA=$HTLIB_DATA HTLIB_CACHE=$HTLIB_CACHE"
  [ -n "${ONLY_INSTALL:-}" ] && exit 0

  ran=() failed=()
  for nb in $NOTEBOOKS; do
    name=$(basename "$nb")
    if [ "$(left)" -lt 30 ]; then failed+=("$name(no time)"); continue; fi
    echo "== papermill: $name (profile $PROFILE, device $DEVICE, $DATASET), at most $(left) s"
    start=$SECONDS
    timeout "$(left)" $PY -m htlib notebooks --profile "$PROFILE" --dataset "$DATASET" --device "$DEVICE" \
      --out "$OUT/notebooks" --only "$name" --offline
    rc=$?
    echo "== papermill: $name exit $rc after $((SECONDS - start)) s"
    if [ $rc = 0 ]; then ran+=("$OUT/notebooks/$name"); else failed+=("$name"); fi
  done

  # nbval_step LABEL SKIP MODE FILES...: one nbval run within the time left; sets step_rc
  nbval_step() {
    local label=$1 skip=$2 mode=$3; shift 3
    step_rc=0
    if [ "$skip" = 1 ]; then echo "== $label: skipped"; return; fi
    if [ "$(left)" -lt 30 ]; then echo "== $label: skipped, $(left) s left"; step_rc=1; return; fi
    echo "== $label: ${*##*/}, at most $(left) s"
    local start=$SECONDS
    # the inline backend, as the committed figures were made (Agg would show no figure at all)
    timeout "$(left)" env -u MPLBACKEND $PY -m pytest -q "$mode" -p no:cacheprovider -c pyproject.toml \
      --rootdir "$PWD" --nbval-sanitize-with tests/nbval_sanitize.cfg "$@"
    step_rc=$?
    echo "== $label: exit $step_rc after $((SECONDS - start)) s"
  }
  skip=0; { [ "$NBVAL" = 0 ] || [ ${#ran[@]} = 0 ]; } && skip=1
  nbval_step "nbval (as make nbval)" "$skip" --nbval-lax "${ran[@]}"
  nbval_rc=$step_rc
  # The committed notebooks (profile quick, device "auto": the GPU here) under strict nbval, as
  # `make nbval-committed` runs them: numbers read from results/ must match exactly, live ones are
  # marked ≈ and masked (README, "Testing").
  skip=0; [ "$NBVAL" = 0 ] && skip=1
  nbval_step "nbval-committed (strict)" "$skip" --nbval notebooks/0*.ipynb
  committed_rc=$step_rc
  echo "== ran ${#ran[@]}: ${ran[*]##*/}; failed ${#failed[@]}: ${failed[*]:-none}; nbval exit $nbval_rc; nbval-committed exit $committed_rc; $SECONDS s in all"
  date -u
  [ ${#failed[@]} = 0 ] && [ $nbval_rc = 0 ] && [ $committed_rc = 0 ]
} 2>&1 | tee "$OUT/gpu_notebooks.log"
