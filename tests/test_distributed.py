"""torchrun + DistributedDataParallel on the CPU: 2 processes, the gloo backend (htlib.distributed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from htlib.errors import CheckpointError
from htlib.train import Trainer

pytestmark = pytest.mark.numeric  # exact resume across processes: see pyproject.toml
HERE = Path(__file__).parent
THREADS_BEFORE = os.environ.get("OMP_NUM_THREADS")


def torchrun(*args: str, cwd: Path = HERE.parent) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_averaged_gradient_equals_the_gradient_of_the_whole_batch(tmp_path):
    torchrun(str(HERE / "ddp_worker.py"), "gradients", str(tmp_path))
    report = json.loads((tmp_path / "gradients.json").read_text())
    assert report["processes"] == 2 and report["largest"] > 0.01 and report["worst"] < 1e-5 * report["largest"]


def test_two_process_run_finishes_and_resumes_exactly(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    torchrun(str(HERE / "ddp_worker.py"), "train", str(straight))
    torchrun(str(HERE / "ddp_worker.py"), "stop", str(resumed))
    checkpoint = torch.load(resumed / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 3 and checkpoint["processes"] == 2 and len(checkpoint["sampler"]) == 2
    assert not torch.equal(checkpoint["sampler"][0], checkpoint["sampler"][1])  # one stream per process
    torchrun(str(HERE / "ddp_worker.py"), "train", str(resumed))
    result = json.loads((resumed / "result.json").read_text())
    assert result == {**json.loads((straight / "result.json").read_text()), "wall_seconds": result["wall_seconds"]}
    assert result["processes"] == 2 and result["episodes_seen"] == 6 * 4
    drop = lambda folder: pd.read_csv(folder / "metrics.csv").drop(columns="seconds")  # noqa: E731
    assert drop(resumed).equals(drop(straight))
    # a single process cannot continue the two streams
    with pytest.raises(CheckpointError, match="2 process.*nproc_per_node=2"):
        from test_train import tiny
        Trainer(tiny(episodes_per_step=4), resumed).restore()


def test_torchrun_runs_the_train_command(tmp_path):
    out = torchrun("-m", "htlib", "train", "--dataset", "synthetic", "--profile", "ci", "--steps", "2",
                   "--ways", "5", "--channels", "4", "--transformer-layers", "1", "--device", "cpu",
                   "--no-progress", "--run-dir", str(tmp_path))
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["processes"] == 2 and result["episodes_seen"] == 2 * 4
    assert out.stdout.count('"test_accuracy"') == 1  # rank 0 alone writes and prints the result


def test_train_processes_relaunches_itself_as_data_parallel_processes(tmp_path, capsys):
    """`python -m htlib train --processes 2` is the torchrun command above without torchrun; a B the
    processes cannot split is refused before any starts."""
    from htlib.cli import main

    common = ["train", "--dataset", "synthetic", "--profile", "ci", "--steps", "2", "--ways", "5", "--channels", "4",
              "--transformer-layers", "1", "--device", "cpu", "--no-progress"]
    assert main([*common, "--run-dir", str(tmp_path / "two"), "--processes", "2"]) == 0
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["processes"] == 2 and result["episodes_seen"] == 2 * 4
    assert main([*common, "--run-dir", str(tmp_path / "odd"), "--processes=2", "--episodes-per-step", "3"]) == 2
    assert "3 episodes per step cannot be split evenly" in capsys.readouterr().err
    assert not (tmp_path / "odd").exists()
    assert main([*common, "--run-dir", str(tmp_path / "none"), "--processes", "0"]) == 2
    (tmp_path / "a-file").write_text("")  # each process fails on its own: one line says so, no traceback
    assert main([*common, "--run-dir", str(tmp_path / "a-file"), "--processes", "2"]) == 2
    assert "of 2 stopped with exit code" in capsys.readouterr().err
    assert "OMP_NUM_THREADS" not in os.environ or os.environ["OMP_NUM_THREADS"] == THREADS_BEFORE
