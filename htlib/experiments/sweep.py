"""Sweeps: train every (method, channels, shots, seed) cell, skip the ones already done.

Each cell is an ordinary training run in its own run folder
(results/runs/<profile>-sweep/<name>/, see htlib.runs); a cell whose
result.json exists is not trained again, so a sweep can be interrupted, resumed or extended.
The table of results is rebuilt from those result.json files after every cell: one tidy row
per cell, written to results/sweep_<profile>_<dataset>.csv.

`workers > 1` trains several cells at once in separate processes (each with its share of the
CPU threads); that pays off on a GPU, whose small kernels leave it mostly idle for one process.
`max_minutes` stops starting new cells after that long; the cells left out are listed, and a
later call trains them.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from htlib.config import TrainConfig, check_runs
from htlib.errors import ConfigError
from htlib.methods import compared_methods, get_method
from htlib.profiles import Budget, budget_at
from htlib.runs import Run, is_finished, make_run, table_path
from htlib.train import train
from htlib.schemas import read_result
from htlib.utils import write_atomic

# One cell's budget at each profile: dozens of cells share the time of one run. quick: sized from
# results/step_costs_cpu.csv so that its 48 cells fit in about 90 minutes on 2 CPU cores; long is
# meant for a GPU (minutes there).
SWEEP_BUDGETS = {"ci": Budget(4, 2), "quick": Budget(300, 4), "long": Budget(1_000, 16),
                 "paper": Budget(100_000, 32), "gpu": Budget(5_000, 64)}
# The MAML of the comparison at each profile (others: second-order "maml"). Second order with 5 inner
# steps costs 5-17 s per step at 5-shot on 2 CPU cores, more than all other methods together, so the
# CPU profiles compare first-order MAML with one inner step.
SWEEP_MAML = {"ci": "fomaml-1step", "quick": "fomaml-1step"}
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
    methods: list[str] | None = None  # default: both HTs, ProtoNet and the profile's MAML variant
    seeds: list[int] = field(default_factory=lambda: [0])
    data_dir: str | None = None
    device: str = "auto"

    def check(self) -> list[Run]:
        """The cells, each checked (settings, and the task against the data) before any trains."""
        for name in ("shots", "channels", "seeds"):
            if not isinstance(getattr(self, name), (list, tuple)):
                raise ConfigError(f"{name} must be a list, e.g. [{getattr(self, name)!r}], got {getattr(self, name)!r}")
        cells = self.cells()
        check_runs([cell.config for cell in cells])
        return cells

    @property
    def budget(self) -> Budget:
        """The steps x episodes of one cell at this profile (SWEEP_BUDGETS)."""
        return budget_at(SWEEP_BUDGETS, self.profile, "sweep")

    def cells(self) -> list[Run]:
        """One run per cell, with the profile's sweep budget, in its place (results/runs/<profile>-sweep/)."""
        budget = self.budget
        methods = self.methods or compared_methods(SWEEP_MAML.get(self.profile, "maml"))
        out = []
        for method, shots, channels, seed in itertools.product(methods, self.shots, self.channels, self.seeds):
            # the reference: 1-shot uses 60 queries (3 per class), 5-shot 100 (5 per class)
            queries = 3 if shots == 1 else 5
            out.append(make_run(TrainConfig(
                dataset=self.dataset, data_dir=self.data_dir, ways=self.ways, shots=shots, queries=queries,
                channels=channels, profile=self.profile, seed=seed, device=self.device,
                steps=budget.steps, episodes_per_step=budget.episodes_per_step,
                val_every=max(1, budget.steps // 2), method=method), group="sweep"))
        return out

    @property
    def table_path(self) -> Path:
        """results/sweep_<profile>_<dataset>.csv; smoke (ci) tables go to the git-ignored runs/."""
        return table_path("sweep", self.profile, self.dataset)


def collect(spec: SweepSpec) -> pd.DataFrame:
    """The tidy table of every finished cell of the sweep (one row per cell)."""
    rows = []
    for cell in spec.cells():
        result = cell.folder / "result.json"
        if result.is_file():
            rows.append(read_result(result))
    return pd.DataFrame(rows, columns=COLUMNS)


def run_sweep(spec: SweepSpec, progress: bool = True, write_table: bool = True, workers: int = 1,
              max_minutes: float | None = None) -> pd.DataFrame:
    """Train the missing cells (resuming an interrupted one), then return the table of finished ones.

    workers: cells trained at once, each in its own process (1 = in this process, in order).
    max_minutes: start no new cell after this many minutes; the cells left out are printed.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a whole number >= 1, got {workers!r}")
    if max_minutes is not None and not max_minutes >= 0:
        raise ConfigError(f"max_minutes must be >= 0 or None, got {max_minutes!r}")
    start = time.monotonic()
    todo = []
    for cell in spec.check():
        if is_finished(cell):
            print(f"{cell.folder.name}: done before, skipped")
        else:
            todo.append(cell)

    def time_left() -> bool:
        return max_minutes is None or time.monotonic() - start < 60 * max_minutes

    def finished(cell: Run) -> None:
        print(f"{cell.folder.name}: finished after "
              f"{time.monotonic() - start:.0f} s of the sweep", flush=True)
        if write_table:
            _write(spec, collect(spec))

    if workers <= 1:
        for i, cell in enumerate(todo, 1):
            if not time_left():
                break
            print(f"[{i}/{len(todo)}] {cell.folder.name}: training", flush=True)
            train(cell, resume=True, progress=progress)
            finished(cell)
    else:
        # Without a time limit the dearest cells go first, so that the workers finish together;
        # with one, the cheapest go first (the small CNNs, the heart of the paper's claim).
        order = sorted(todo, key=_cost, reverse=max_minutes is None)
        _run_parallel(order, workers, time_left, finished)
    table = collect(spec)
    if write_table:
        _write(spec, table)
    missing = len(spec.cells()) - len(table)
    if missing:
        print(f"{missing} of {len(spec.cells())} cells not trained (time limit of {max_minutes} min); "
              "run the sweep again to train them.")
    return table


def _cost(cell: Run) -> float:
    """A rough relative cost of a cell, to order the cells of a parallel sweep."""
    cfg = cell.config
    return get_method(cfg.method).step_cost * cfg.channels ** 1.5 * (cfg.shots + cfg.queries)


def _run_parallel(cells: list[Run], workers: int, time_left, finished) -> None:
    """Train cells in `workers` processes; a new cell starts only while there is time left."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads,
                             initargs=(threads,)) as pool:
        queue = list(cells)
        running = {}
        while queue or running:
            while queue and len(running) < workers and time_left():
                cell = queue.pop(0)
                print(f"{cell.folder.name}: training", flush=True)
                running[pool.submit(_train_quietly, cell)] = cell
            if not time_left():
                queue.clear()
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                cell = running.pop(future)
                future.result()  # a failed cell stops the sweep with its own error
                finished(cell)


def _train_quietly(cell: Run) -> None:
    train(cell, resume=True, progress=False)


def _write(spec: SweepSpec, table: pd.DataFrame) -> None:
    write_atomic(spec.table_path, lambda tmp: table.to_csv(tmp, index=False))
