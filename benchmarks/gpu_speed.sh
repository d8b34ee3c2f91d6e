#!/usr/bin/env bash
# The throughput check on one lent GPU, in one go within 10 minutes (issue: training speed):
#   1. the step reads nothing back from the GPU (torch.cuda.set_sync_debug_mode("error"));
#   2. `python -m htlib bench` at B = 16, 256, 1024 for the settings old, unfused, new, bf16, then the
#      compiled settings at B = 1024 (compilation takes a minute or more per row);
#   3. the headline run (`train --profile gpu`: the paper's 4M episodes, B = 64, the recipe study's
#      recommended HT options) for the time left, stopped with a resumable checkpoint if it has not
#      finished; the next GPU resumes it (IN_RUN).
# Everything lands in $OUT (bench CSVs, the log, the run folder as run.tgz with its resumable
# checkpoint), to be committed under results/gpu/. A run.tgz in $IN_RUN is resumed instead.
#
# Run from the repository root on the GPU machine (torch there; htlib via PYTHONPATH):
#   OUT=dir JOB_SECONDS=560 bash benchmarks/gpu_speed.sh
# Dry run on a CPU (small and fast, to test the script itself):
#   OUT=/tmp/gs DEVICE=cpu BATCHES="4 8" COMPILE_BATCHES= TRAIN_ARGS="--steps 20 --episodes-per-step 8" \
#     RUN=/tmp/gs-run PYTHON=.venv/bin/python bash benchmarks/gpu_speed.sh  (COMPILE_BATCHES empty: no compiled rows)
set -u
OUT=${OUT:-runs/gpu_speed}
DEVICE=${DEVICE:-cuda}
JOB_SECONDS=${JOB_SECONDS:-560}
BATCHES=${BATCHES:-16 256 1024}
COMPILE_BATCHES=${COMPILE_BATCHES-1024}
TRAIN_ARGS=${TRAIN_ARGS:-}  # extra `htlib train` options (the dry run shrinks the run)
SYNC_B=${SYNC_B:-64}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD
# the headline run's folder by the project's rule (results/runs/gpu/<name>), so that notebooks find it
RUN=${RUN:-$($PY -c "from htlib.config import TrainConfig; from htlib.runs import make_run
print(make_run(TrainConfig(profile='gpu', device='cpu')).folder.relative_to(__import__('pathlib').Path.cwd()))")}
mkdir -p "$OUT" "$RUN"
[ -n "${IN_RUN:-}" ] && tar xzf "$IN_RUN" -C "$RUN" --strip-components=1
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export HTLIB_DATA=${HTLIB_DATA:-$PWD/.gpudata} HTLIB_CACHE=${HTLIB_CACHE:-/tmp/htlib-cache}
left() { echo $((JOB_SECONDS - SECONDS)); }
{
  date -u
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  $PY -c "from htlib.data import load_split; load_split('omniglot', 'train')" || exit 1  # decode once
  echo "== host syncs in the training step (B = $SYNC_B)"
  timeout 120 $PY - "$DEVICE" "$SYNC_B" <<'EOF'
import sys
import torch
from htlib.config import TrainConfig
from htlib.models.checks import trusted_episodes
from htlib.train import Trainer
device, batch = sys.argv[1], int(sys.argv[2])
trainer = Trainer(TrainConfig(profile="quick", device=device, episodes_per_step=batch, episodes_on_device=True), None)
with trusted_episodes():
    trainer.train_step()  # the first step allocates and sets up; then no sync is allowed
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    for _ in range(3):
        trainer.train_step()
    if device.startswith("cuda"):
        torch.cuda.set_sync_debug_mode("default")
print("no host sync in 3 training steps" if device.startswith("cuda") else "not a GPU: sync check skipped")
EOF
  echo "== bench: old, unfused, new, bf16 at B = $BATCHES ($(left) s left)"
  timeout $(( $(left) > 300 ? 240 : $(left) / 2 )) $PY -m htlib bench --device "$DEVICE" --profile quick \
    --batches $BATCHES --settings old unfused new bf16 --bench-steps 20 --out "$OUT/bench_gpu.csv"
  if [ -n "$COMPILE_BATCHES" ]; then
    echo "== bench: compiled at B = $COMPILE_BATCHES ($(left) s left)"
    timeout $(( $(left) > 330 ? 180 : $(left) / 3 )) $PY -m htlib bench --device "$DEVICE" --profile quick \
      --batches $COMPILE_BATCHES --settings new compile compile+bf16 --bench-steps 20 --out "$OUT/bench_gpu.csv"
  fi
  budget=$(( $(left) - 25 ))
  echo "== the headline run (profile gpu $TRAIN_ARGS) into $RUN, stopped after $budget s if not done"
  timeout -s INT $budget $PY -m htlib train --profile gpu --device "$DEVICE" $TRAIN_ARGS --no-progress \
    --run-dir "$RUN" $( [ -f "$RUN/checkpoint.pt" ] && echo --resume )
  echo "train exit $?"
  date -u
} 2>&1 | tee "$OUT/gpu_speed.log"
tar czf "$OUT/run.tgz" --exclude=.lock -C "$(dirname "$RUN")" "$(basename "$RUN")"
ls -la "$OUT" "$RUN"
