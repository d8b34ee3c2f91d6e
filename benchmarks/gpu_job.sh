#!/usr/bin/env bash
# The GPU check, as run on one lent H100 (see README, "Results on a GPU"): the notebooks' code on
# CUDA, the batched-vs-loop benchmark on CUDA, then the `long` sweep in parallel workers with a
# time limit. Everything it measures lands in $OUT.
#
# Run from the repository root on the GPU machine (torch installed there, htlib via PYTHONPATH):
#   OUT=dir JOB_SECONDS=540 bash benchmarks/gpu_job.sh
# The sweep starts new cells until JOB_SECONDS - 170 s after the start, and is stopped at
# JOB_SECONDS - 20 s, so that the results are always packed before the device's limit.
# HTLIB_DATA must hold omniglot/ (the official zips and splits/). Locally, as a dry run:
#   OUT=/tmp/gj DEVICE=cpu SWEEP_PROFILE=ci JOB_SECONDS=300 WORKERS=2 PYTHON=python bash benchmarks/gpu_job.sh
set -u
OUT=${OUT:-runs/gpu_job}
DEVICE=${DEVICE:-cuda}
SWEEP_PROFILE=${SWEEP_PROFILE:-long}
JOB_SECONDS=${JOB_SECONDS:-540}
WORKERS=${WORKERS:-12}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export HTLIB_DATA=${HTLIB_DATA:-$PWD/.gpudata} HTLIB_CACHE=${HTLIB_CACHE:-/tmp/htlib-cache}
PY=${PYTHON:-python3}
{
  date -u
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  $PY -c "from htlib.data import load_split; load_split('omniglot', 'train')" || exit 1  # decode once
  [ -n "${SKIP_CHECKS:-}" ] || {
  echo "== notebooks on $DEVICE"
  timeout 180 $PY -m htlib.tools.exec_notebook notebooks/0[1-3]_*.ipynb -p profile=ci -p device=$DEVICE
  echo "== benchmark on $DEVICE"
  timeout 120 $PY -m htlib bench --device "$DEVICE" --profile quick
  }
  left=$((JOB_SECONDS - SECONDS))
  minutes=$(awk "BEGIN {print ($left - 170) / 60}")
  echo "== sweep $SWEEP_PROFILE: $WORKERS workers, new cells for $minutes min, stopped after $((left - 20)) s"
  timeout $((left - 20)) $PY -m htlib sweep --profile "$SWEEP_PROFILE" --device "$DEVICE" \
    --workers "$WORKERS" --max-minutes "$minutes" --no-progress
  echo "sweep exit $?"
  date -u
} 2>&1 | tee "$OUT/gpu_job.log"
# the finished cells' json/csv (weights stay behind) and the table
table=$([ "$SWEEP_PROFILE" = ci ] && echo runs || echo results)/sweep_${SWEEP_PROFILE}_omniglot.csv
cells=$([ "$SWEEP_PROFILE" = ci ] && echo runs || echo results/runs)/${SWEEP_PROFILE}-sweep
tar czf "$OUT/sweep_${SWEEP_PROFILE}.tgz" $(ls "$table" 2>/dev/null) \
  $(find "$cells" -name '*.json' -o -name 'metrics.csv' 2>/dev/null)
ls -la "$OUT"
