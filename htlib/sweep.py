"""Sweeps: train every (method, channels, shots, seed) cell, skip the ones already done.

Each cell is an ordinary training run in its own run directory
(results/runs/<profile>-sweep/<name>/, see htlib.train.default_run_dir); a cell whose
result.json exists is not trained again, so a sweep can be interrupted, resumed or extended.
The table of results is rebuilt from those result.json files after every cell: one tidy row
per cell, written to results/sweep_<profile>_<dataset>.csv.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from htlib.data.paths import PROJECT_ROOT
from htlib.profiles import get_profile
from htlib.train import TrainConfig, default_run_dir, train

METHOD_SETTINGS = {
    "ht-all": {"method": "ht", "generate": "all"},
    "ht-logits": {"method": "ht", "generate": "logits"},
    "protonet": {"method": "protonet"},
    "maml": {"method": "maml"},
}
COLUMNS = ["method", "dataset", "ways", "shots", "channels", "seed", "profile", "steps", "episodes_seen",
           "test_accuracy", "ci95", "test_episodes", "trainable_params", "generated_params",
           "wall_seconds", "device", "htlib_version", "torch_version", "python_version"]


@dataclass
class SweepSpec:
    """The grid of a sweep. Defaults: the paper's CNN-size sweep on 20-way Omniglot."""

    profile: str = "quick"
    dataset: str = "omniglot"
    ways: int = 20
    shots: list[int] = field(default_factory=lambda: [1, 5])
    channels: list[int] = field(default_factory=lambda: [4, 6, 8, 16, 32, 64])
    methods: list[str] = field(default_factory=lambda: list(METHOD_SETTINGS))
    seeds: list[int] = field(default_factory=lambda: [0])
    data_dir: str | None = None
    device: str = "auto"

    def cells(self) -> list[TrainConfig]:
        """One TrainConfig per cell, with the profile's sweep budget."""
        unknown = [m for m in self.methods if m not in METHOD_SETTINGS]
        if unknown:
            raise ValueError(f"Unknown methods {unknown}; choose from {list(METHOD_SETTINGS)}")
        prof = get_profile(self.profile)
        out = []
        for method, shots, channels, seed in itertools.product(self.methods, self.shots, self.channels, self.seeds):
            # the reference: 1-shot uses 60 queries (3 per class), 5-shot 100 (5 per class)
            queries = 3 if shots == 1 else 5
            out.append(TrainConfig(
                dataset=self.dataset, data_dir=self.data_dir, ways=self.ways, shots=shots, queries=queries,
                channels=channels, profile=self.profile, seed=seed, device=self.device,
                steps=prof.sweep_steps, episodes_per_step=prof.sweep_episodes_per_step,
                val_every=max(1, prof.sweep_steps // 4), **METHOD_SETTINGS[method]))
        return out

    @property
    def table_path(self) -> Path:
        """results/sweep_<profile>_<dataset>.csv; smoke (ci) tables go to the git-ignored runs/."""
        folder = "runs" if self.profile == "ci" else "results"
        return PROJECT_ROOT / folder / f"sweep_{self.profile}_{self.dataset}.csv"


def collect(spec: SweepSpec) -> pd.DataFrame:
    """The tidy table of every finished cell of the sweep (one row per cell)."""
    rows = []
    for cfg in spec.cells():
        result = default_run_dir(cfg, group="sweep") / "result.json"
        if result.is_file():
            rows.append(json.loads(result.read_text()))
    return pd.DataFrame(rows, columns=COLUMNS)


def run_sweep(spec: SweepSpec, progress: bool = True, write_table: bool = True) -> pd.DataFrame:
    """Train the missing cells (resuming an interrupted one), then return the full table."""
    cells = spec.cells()
    for i, cfg in enumerate(cells, 1):
        run_dir = default_run_dir(cfg, group="sweep")
        label = f"[{i}/{len(cells)}] {run_dir.name}"
        if (run_dir / "result.json").is_file():
            _check_same_config(run_dir, cfg)
            print(f"{label}: done before, skipped")
            continue
        print(f"{label}: training", flush=True)
        train(cfg, run_dir, resume=True, progress=progress)
        if write_table:
            _write(spec, collect(spec))
    table = collect(spec)
    if write_table:
        _write(spec, table)
    return table


def _check_same_config(run_dir: Path, cfg: TrainConfig) -> None:
    """A finished cell is reused only if it was trained with exactly this cell's settings."""
    ignore = ("device", "data_dir")
    stored = json.loads((run_dir / "config.json").read_text())
    wanted = cfg.resolved().to_dict()
    differ = {k: (stored.get(k), v) for k, v in wanted.items() if k not in ignore and stored.get(k) != v}
    if differ:
        raise ValueError(
            f"{run_dir} holds a finished run with other settings {differ} (as (stored, wanted)); "
            f"the profile's sweep budget probably changed. Delete that folder to retrain the cell.")


def _write(spec: SweepSpec, table: pd.DataFrame) -> None:
    path = spec.table_path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
