"""Ctrl-C during training, then --resume, gives the same run as never stopping: bit for bit on CPU.

Real `python -m htlib train` processes get SIGINT at several points of their training (right
after a log line, a little later, during the steps around a validation); each is then resumed
and compared with an uninterrupted run: weights, metrics (all but wall time) and result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from htlib import checkpoints

pytestmark = pytest.mark.numeric  # exact resume across processes: see pyproject.toml
ROOT = Path(__file__).resolve().parents[1]
STEPS = 60
TRAIN = [sys.executable, "-m", "htlib", "train", "--dataset", "synthetic", "--profile", "ci", "--steps", str(STEPS),
         "--ways", "5", "--channels", "4", "--device", "cpu", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TRAIN, "--run-dir", str(run_dir), *extra], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def _interrupt(run_dir: Path, after_line: str, delay: float) -> subprocess.CompletedProcess:
    """Start a run, send SIGINT `delay` s after it prints a line starting with `after_line`."""
    proc = subprocess.Popen([*TRAIN, "--run-dir", str(run_dir)], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(after_line):
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + out, err)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "run"
    done = _train(run)
    assert done.returncode == 0, done.stderr
    return run


def _same_run(a: Path, b: Path) -> None:
    wa, wb = checkpoints.load(a / "model.pt"), checkpoints.load(b / "model.pt")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"weights {name} differ"
    ma, mb = (pd.read_csv(p / "metrics.csv").drop(columns="seconds") for p in (a, b))
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    ra, rb = (json.loads((p / "result.json").read_text()) for p in (a, b))
    for r in (ra, rb):
        r.pop("wall_seconds")
    assert ra == rb


@pytest.mark.parametrize("after_line, delay", [
    ("step 6/", 0.0),      # right after a log line (every 2 steps at ci)
    ("step 8/", 0.13),     # in the middle of a step
    ("step 18/", 0.05),    # in the steps just before the validation at step 20
], ids=["after-log", "mid-step", "before-validation"])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path, reference, after_line, delay):
    run = tmp_path / "run"
    stopped = _interrupt(run, after_line, delay)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    last_line = stopped.stderr.strip().splitlines()[-1]
    assert last_line.startswith("interrupted after step") and last_line.endswith("--resume"), stopped.stderr
    state = checkpoints.load(run / "checkpoint.pt")
    assert 0 < state["step"] < STEPS, "the signal must land inside training for this test to mean anything"
    assert not (run / "result.json").exists()

    resumed = _train(run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {run / 'checkpoint.pt'} at step {state['step']}" in resumed.stdout
    _same_run(reference, run)


def test_the_message_names_the_exact_resume_command(tmp_path):
    run = tmp_path / "run"
    stopped = _interrupt(run, "step 4/", 0.0)
    command = stopped.stderr.strip().splitlines()[-1].split("Resume with: ", 1)[1]
    assert command == " ".join(["python -m htlib", *TRAIN[3:], "--run-dir", str(run), "--resume"])
