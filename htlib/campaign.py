"""The campaign: one long training run toward the paper's 4M episodes, a CPU session at a time.

No session has the hours the paper's budget takes on 2 CPU cores, so the run is cut into
segments. Each `run_campaign` call resumes the run from its checkpoint, trains until its deadline
(checkpointing at every validation and every `save_minutes`), stops cleanly, and leaves in the run
folder what the next session and a reader need, small enough to commit:

- ``checkpoint.pt``: model, optimizer, scheduler, sampler and RNG states (a resumed run continues
  bit for bit on the same machine kind);
- ``metrics.csv``: the training and validation curve;
- ``model.pt``: the best weights on validation so far (``htlib.train.load_trained`` loads them);
- ``segments.csv``: one row per segment, with the steps it trained, its speed and the machine
  (CPU model, kernel capability, threads), since segments may run on different CPUs;
- ``tests.csv``: the best weights so far tested at the end of every segment, on the protocol's
  test episodes, at 1 shot (as trained) and at 5 shots (the 1-shot model given more support
  images): the current test accuracy, and how it grows with the episodes;
- ``config.json``; and ``result.json`` with the test accuracy once the last step is trained.

The folder is ``results/runs/campaign/<run name>/`` (htlib.runs): its name spells out the protocol
and any HT option, so two campaigns never share one.

The paper trains its 5-shot model from scratch; here the 1-shot campaign's best weights are
fine-tuned at 5 shots (`CampaignSpec(shots=5)`, `python -m htlib campaign --shots 5`): a second run
in the same place (``...-20w5s-...``), resumed the same way, on a tenth of the campaign's steps
with its own warm-up and cosine. Its ``init.json`` records where it started (the 1-shot run, at
how many episodes, with which validation accuracy), since the 1-shot run's model.pt moves on.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

import htlib.checkpoints as checkpoints
from htlib.config import TrainConfig
from htlib.cpu import capability, cpu_model
from htlib.data.protocols import protocol_settings
from htlib.errors import ConfigError
from htlib.profiles import get_profile
from htlib.runs import Run, make_run, relative_to_project, run_lock
from htlib.schemas import read_config, read_result, read_table
from htlib.utils import write_atomic, write_text_atomic

SEGMENT_COLUMNS = ["started_utc", "ended_utc", "from_step", "to_step", "episodes", "wall_seconds",
                   "episodes_per_second", "cpu", "capability", "threads", "device", "torch_version", "code"]
TEST_COLUMNS = ["tested_utc", "step", "episodes", "best_at_episodes", "best_val_accuracy", "shots",
                "test_accuracy", "ci95", "test_episodes", "cpu", "code"]
TEST_SHOTS = (1, 5)  # trained at 1 shot; the paper also reports 5 shots (98.8% on Omniglot)
# A fine-tune trains a tenth of the campaign's steps and validates four times as often (its run is short).
FINETUNE_STEPS_FRACTION, FINETUNE_VAL_FACTOR = 10, 4


@dataclass
class CampaignSpec:
    """What the campaign trains: HT-all, 20-way 1-shot, C = 8, on a protocol, with HT options;
    with `shots` > 1, the fine-tune of that campaign's best weights at `shots` shots."""

    protocol: str = "paper"
    model_options: dict = field(default_factory=dict)
    seed: int = 0
    data_dir: str | None = None
    device: str = "auto"
    profile: str = "campaign"  # the budget; "ci" for a smoke campaign
    dataset: str = "omniglot"
    ways: int = 20
    shots: int = 1

    def config(self) -> TrainConfig:
        cfg = TrainConfig(profile=self.profile, seed=self.seed, data_dir=self.data_dir, device=self.device,
                          dataset=self.dataset, ways=self.ways, shots=self.shots,
                          method="ht-all", **protocol_settings(self.protocol),
                          model_options=dict(self.model_options))
        if self.shots == 1:
            return cfg
        budget = get_profile(self.profile)
        return dataclasses.replace(cfg, init_from=relative_to_project(self.start().folder / "model.pt"),
                                   steps=max(1, budget.train_steps // FINETUNE_STEPS_FRACTION),
                                   val_every=max(1, budget.val_every // FINETUNE_VAL_FACTOR))

    def start(self) -> Run:
        """The 1-shot campaign run a fine-tune starts from."""
        return dataclasses.replace(self, shots=1).run()

    def run(self) -> Run:
        return make_run(self.config())


def run_campaign(spec: CampaignSpec, minutes: float, save_minutes: float = 10.0, progress: bool = False) -> dict:
    """Train the campaign's run for at most `minutes` (resuming it), then write its files; returns
    this segment's row of segments.csv. Once every step is trained it tests the best weights and
    writes result.json, as any finished run."""
    from htlib.train import Trainer, TrainingInterrupted, _finish

    if not minutes > 0 or not save_minutes > 0:
        raise ConfigError(f"minutes and save_minutes must be > 0, got {minutes!r} and {save_minutes!r}.")
    run = spec.run()
    deadline = time.monotonic() + 60 * minutes
    with run_lock(run.folder):
        trainer = Trainer(run)
        resumed = trainer.restore()
        if not resumed and spec.shots > 1:
            _record_start(spec.start().folder, run.folder)
        write_text_atomic(run.folder / "config.json", json.dumps(trainer.cfg.to_dict(), indent=2))
        first, started, clock = trainer.step, datetime.now(timezone.utc), time.perf_counter()
        print(f"campaign {run.folder.name}: {'resumed at' if resumed else 'starts at'} step {first} of "
              f"{trainer.cfg.steps}, for at most {minutes:g} min", flush=True)
        try:
            trainer.fit(progress, deadline=deadline, save_every=60 * save_minutes)
        except TrainingInterrupted:
            # Ctrl-C: the checkpoint holds the last whole step. The segment is recorded all the same
            # (without the tests, which take minutes), so that the campaign's episodes and hours add up.
            _save_best(trainer)
            _append_segment(run.folder, _segment_row(trainer, first, started, time.perf_counter() - clock))
            raise
        wall = time.perf_counter() - clock
        if trainer.step >= trainer.cfg.steps:
            _finish(trainer)  # the test, model.pt (best weights), result.json
        else:
            _save_best(trainer)
        record_tests(trainer)
        row = _segment_row(trainer, first, started, wall)
        _append_segment(run.folder, row)
    print(f"campaign {run.folder.name}: step {trainer.step} of {trainer.cfg.steps} "
          f"({trainer.step * trainer.cfg.episodes_per_step:,} episodes), best validation "
          f"{trainer.best_val:.3f}", flush=True)
    return row


def _record_start(start: Path, folder: Path) -> None:
    """init.json of a fine-tune: the 1-shot run, episodes and validation accuracy of the weights it loaded.
    Its model.pt is written at the end of a segment, so the best is sought up to the last segment's
    end (the 1-shot run may be training a next segment meanwhile)."""
    trained = segments(start)
    until = int(trained["to_step"].max()) if len(trained) else None
    best = best_validation(start, until)
    write_text_atomic(folder / "init.json", json.dumps({
        "from": start.name, "trained_episodes": int(trained["episodes"].sum()) if len(trained) else 0,
        "best_at_episodes": None if best is None else int(best["episodes"]),
        "best_val_accuracy": None if best is None else float(best["val_accuracy"])}, indent=2))


def retest(spec: CampaignSpec) -> list[dict]:
    """Test the campaign's best weights so far (from its checkpoint) and append the rows to
    tests.csv: for a segment whose own test did not run, or to test again after a change."""
    from htlib.train import Trainer

    run = spec.run()
    with run_lock(run.folder):
        trainer = Trainer(run)
        if not trainer.restore():
            raise ConfigError(f"No campaign checkpoint in {run.folder}: train a segment first "
                              f"(`python -m htlib campaign --minutes M`).")
        return record_tests(trainer)


def _save_best(trainer) -> None:
    """model.pt: the best-on-validation weights so far (the latest while none is recorded)."""
    best = trainer.best_state if trainer.best_state is not None else trainer.model.state_dict()
    checkpoints.save(best, trainer.run_dir / "model.pt")


def _segment_row(trainer, first: int, started: datetime, wall: float) -> dict:
    """The row of segments.csv of a segment that trained from step `first` for `wall` seconds."""
    episodes = (trainer.step - first) * trainer.cfg.episodes_per_step
    return {"started_utc": started.isoformat(timespec="seconds"),
            "ended_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "from_step": first, "to_step": trainer.step, "episodes": episodes, "wall_seconds": round(wall, 1),
            "episodes_per_second": round(episodes / wall, 2) if wall > 0 else 0.0,
            "cpu": cpu_model(), "capability": capability(), "threads": torch.get_num_threads(),
            "device": str(trainer.device), "torch_version": torch.__version__, "code": code_version()}


def record_tests(trainer) -> list[dict]:
    """The best-on-validation weights tested at each of TEST_SHOTS; rows appended to tests.csv."""
    folder, cfg = trainer.run_dir, trainer.cfg
    best = best_validation(folder)
    rows = []
    for shots in TEST_SHOTS:
        accuracy = trainer.test(shots=shots)
        rows.append({"tested_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "step": trainer.step,
                     "episodes": trainer.step * cfg.episodes_per_step,
                     "best_at_episodes": None if best is None else int(best["episodes"]),
                     "best_val_accuracy": None if best is None else float(best["val_accuracy"]),
                     "shots": shots, "test_accuracy": accuracy.accuracy, "ci95": accuracy.ci95,
                     "test_episodes": accuracy.episodes, "cpu": cpu_model(), "code": code_version()})
        print(f"campaign test at {rows[-1]['episodes']:,} episodes: {accuracy}", flush=True)
    _append_rows(folder / "tests.csv", rows, TEST_COLUMNS, "tests")
    return rows


def best_validation(folder: Path, until_step: int | None = None) -> pd.Series | None:
    """The metrics.csv row of the best validation accuracy so far, or up to `until_step` (None before
    the first)."""
    path = Path(folder) / "metrics.csv"  # none before the first log point
    if not path.is_file():
        return None
    metrics = read_table(path, "metrics")
    if until_step is not None:
        metrics = metrics[metrics["step"] <= until_step]
    val = metrics.dropna(subset=["val_accuracy"]) if "val_accuracy" in metrics else metrics.iloc[:0]
    return val.loc[val["val_accuracy"].idxmax()] if len(val) else None


def code_version() -> str:
    """The project's git commit (with "+changes" when the work tree differs), or "unknown": a
    segment trained by other code may round differently, and its row says so."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "htlib"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def segments(folder: str | Path) -> pd.DataFrame:
    """The campaign's segments so far (empty before the first)."""
    return _read_rows(Path(folder) / "segments.csv", SEGMENT_COLUMNS, "segments")


def campaign_tests(folder: str | Path) -> pd.DataFrame:
    """The campaign's tests so far, one row per test and shot count (empty before the first)."""
    return _read_rows(Path(folder) / "tests.csv", TEST_COLUMNS, "tests")


def _read_rows(path: Path, columns: list[str], kind: str) -> pd.DataFrame:
    return read_table(path, kind) if path.is_file() else pd.DataFrame(columns=columns)


def _append_segment(folder: Path, row: dict) -> None:
    _append_rows(folder / "segments.csv", [row], SEGMENT_COLUMNS, "segments")


def _append_rows(path: Path, rows: list[dict], columns: list[str], kind: str) -> None:
    before, new = _read_rows(path, columns, kind), pd.DataFrame(rows, columns=columns)
    table = pd.concat([before, new], ignore_index=True) if len(before) else new
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))


def status(root: str | Path) -> list[dict]:
    """Where each campaign under `root` (results/runs/campaign) stands, from its files: episodes
    reached, best validation accuracy so far and at which episode, segments and CPUs, test result."""
    out = []
    for folder in sorted(f for f in Path(root).glob("*") if (f / "config.json").is_file()):
        config = read_config(folder / "config.json")
        parts, best, tested = segments(folder), best_validation(folder), campaign_tests(folder)
        latest = tested[tested["step"] == tested["step"].max()] if len(tested) else tested
        steps = int(parts["to_step"].max()) if len(parts) else 0
        result, start = folder / "result.json", folder / "init.json"
        out.append({
            "name": folder.name, "split_scheme": config["split_scheme"], "shots": config["shots"],
            "init": json.loads(start.read_text()) if start.is_file() else None,  # a fine-tune's start
            "steps": steps, "total_steps": config["steps"], "episodes": steps * config["episodes_per_step"],
            "total_episodes": config["steps"] * config["episodes_per_step"],
            "best_val_accuracy": None if best is None else float(best["val_accuracy"]),
            "best_at_episodes": None if best is None else int(best["episodes"]),
            "segments": len(parts), "cpus": sorted(set(parts["cpu"])) if len(parts) else [],
            "hours": round(float(parts["wall_seconds"].sum()) / 3600, 2) if len(parts) else 0.0,
            "result": read_result(result) if result.is_file() else None,
            # the latest test of the best weights so far: {shots: (accuracy, ci95, at episodes)}
            "tests": {int(r.shots): (float(r.test_accuracy), float(r.ci95), int(r.episodes))
                      for r in latest.itertuples()},
        })
    return out
