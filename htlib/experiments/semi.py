"""Semi-supervised support sets: do unlabelled samples raise accuracy? (the paper's claim 2)

The design, for each method, at one task (20-way 1-shot Omniglot, C = 8 by default):

1. the **base**: the profile's fully supervised single run of that method (what notebook 02 and
   ``python -m htlib train`` produce; trained here if it is missing);
2. two **arms** continue the base for the profile's budget (``SEMI_BUDGETS``) (same optimiser, same
   schedule): one with U unlabelled samples per class in every training support set, one with
   none, the control that gets the same extra training;
3. every arm is tested on the same test episodes at several numbers of unlabelled samples per
   class (U at test need not equal U in training: the HT takes any number of tokens) and, once,
   with distractor classes whose unlabelled images belong to no class of the episode.

For the HT an unlabelled sample is one more token, carrying the "unlabelled" label embedding in
place of a class embedding; the loss is unchanged. The semi-supervised baseline is ProtoNet with
soft k-means refinement (``protonet-softkmeans``), continued from the profile's ProtoNet run.

Each arm is a run folder ``results/runs/<profile>-semi/<name>/`` (finished arms are not trained
again) whose ``evaluations.json`` holds its test rows; the tidy table of all rows is
``results/semi_<profile>_<dataset>.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import htlib.checkpoints as checkpoints
from htlib.config import TrainConfig, check_runs
from htlib.errors import ConfigError
from htlib.methods import get_method, methods_that
from htlib.profiles import Budget, budget_at
from htlib.runs import Run, make_run, relative_to_project, table_path
from htlib.train import Trainer, load_or_train, train
from htlib.schemas import read_result
from htlib.utils import write_atomic, write_text_atomic

# The extra training of each arm at each profile, continuing the profile's supervised run.
SEMI_BUDGETS = {"ci": Budget(4, 2), "quick": Budget(300, 8), "long": Budget(2_000, 16), "paper": Budget(20_000, 32),
                "gpu": Budget(5_000, 64)}
METHODS = methods_that(uses_unlabelled=True)  # the methods compared with and without unlabelled samples
COLUMNS = ["method", "dataset", "ways", "shots", "channels", "seed", "profile", "train_unlabelled",
           "test_unlabelled", "test_distractors", "base_episodes", "steps", "episodes_seen", "test_accuracy",
           "ci95", "test_episodes", "trainable_params", "generated_params", "wall_seconds", "device",
           "htlib_version", "torch_version", "python_version"]


@dataclass
class SemiSpec:
    """The semi-supervised experiment. Defaults: the paper's setting at a small C."""

    profile: str = "quick"
    dataset: str = "omniglot"
    ways: int = 20
    shots: int = 1
    channels: int = 8
    seed: int = 0
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    train_unlabelled: int = 5  # U per class in the training support sets of the unlabelled arm
    test_unlabelled: list[int] = field(default_factory=lambda: [0, 1, 2, 5, 10])
    distractors: int = 5  # distractor classes in one extra test, at U = train_unlabelled
    data_dir: str | None = None
    device: str = "auto"

    @property
    def budget(self) -> Budget:
        """The extra training of each arm at this profile (SEMI_BUDGETS)."""
        return budget_at(SEMI_BUDGETS, self.profile, "semi-supervised experiment")

    def base(self, method: str) -> Run:
        """The supervised run an arm starts from: the profile's single run of the method (or of the
        method it refines, Method.starts_from)."""
        _check_method(method)
        return make_run(TrainConfig(dataset=self.dataset, data_dir=self.data_dir, ways=self.ways, shots=self.shots,
                                    channels=self.channels, profile=self.profile, seed=self.seed,
                                    device=self.device, method=get_method(method).starts_from or method))

    def arm(self, method: str, unlabelled: int) -> Run:
        """The continued run of `method` with `unlabelled` samples per class in training."""
        budget = self.budget
        base_weights = self.base(method).folder / "model.pt"
        return make_run(TrainConfig(
            dataset=self.dataset, data_dir=self.data_dir, ways=self.ways, shots=self.shots,
            channels=self.channels, profile=self.profile, seed=self.seed, device=self.device,
            unlabelled=unlabelled, steps=budget.steps, episodes_per_step=budget.episodes_per_step,
            val_every=max(1, budget.steps // 2), init_from=relative_to_project(base_weights),
            method=method), group="semi")

    def arms(self) -> list[Run]:
        if self.train_unlabelled < 1:
            raise ConfigError(f"train_unlabelled must be >= 1 (the control arm has 0), got {self.train_unlabelled}")
        return [self.arm(m, u) for m in self.methods for u in (0, self.train_unlabelled)]

    def check(self) -> None:
        """Every base, arm and test condition checked against the settings and the data, before any trains."""
        arms = [arm.config for arm in self.arms()]
        tests = [dataclasses.replace(arm, unlabelled=u, distractors=d) for arm in arms[:1] for u, d in self.tests()]
        check_runs([self.base(m).config for m in self.methods] + arms + tests)

    def tests(self) -> list[tuple[int, int]]:
        """(unlabelled, distractor classes) of every test condition."""
        return [(u, 0) for u in self.test_unlabelled] + ([(self.train_unlabelled, self.distractors)]
                                                         if self.distractors else [])

    @property
    def table_path(self) -> Path:
        return table_path("semi", self.profile, self.dataset)


def run_semi(spec: SemiSpec, progress: bool = True) -> pd.DataFrame:
    """Train missing bases and arms, run missing test conditions, return (and write) the table."""
    spec.check()
    for arm in spec.arms():
        base = load_or_train(spec.base(arm.config.method), progress=progress)  # trains only if missing
        if not (arm.folder / "result.json").is_file():
            print(f"{arm.folder.name}: continuing {base.result['steps']} base steps for "
                  f"{arm.config.steps} steps with U = {arm.config.unlabelled}", flush=True)
            train(arm, resume=True, progress=progress)
        _evaluate_arm(spec, arm, base.result)
    table = collect(spec)
    write_atomic(spec.table_path, lambda tmp: table.to_csv(tmp, index=False))
    return table


def collect(spec: SemiSpec) -> pd.DataFrame:
    """All test rows of the finished arms of `spec`."""
    rows = []
    for arm in spec.arms():
        path = arm.folder / "evaluations.json"
        if path.is_file():
            wanted = set(spec.tests())
            rows += [r for r in json.loads(path.read_text())
                     if (r["test_unlabelled"], r["test_distractors"]) in wanted]
    return pd.DataFrame(rows, columns=COLUMNS)


def _evaluate_arm(spec: SemiSpec, arm: Run, base_result: dict) -> None:
    """Test the arm at every condition not yet in its evaluations.json (written after each)."""
    run_dir, cfg = arm.folder, arm.config
    path = run_dir / "evaluations.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    done = {(r["test_unlabelled"], r["test_distractors"]) for r in rows}
    todo = [t for t in spec.tests() if t not in done]
    if not todo:
        return
    result = read_result(run_dir / "result.json")
    trainer = Trainer(Run(cfg, None))  # for its test episodes; the weights are the arm's best (model.pt)
    checkpoints.load_weights(trainer.model, checkpoints.load(run_dir / "model.pt", "weights"), run_dir / "model.pt")
    for unlabelled, distractors in todo:
        start = time.perf_counter()
        acc = trainer.test(unlabelled=unlabelled, distractors=distractors)
        rows.append({
            **{k: result[k] for k in ("method", "dataset", "ways", "shots", "channels", "seed", "profile",
                                      "steps", "trainable_params", "generated_params", "device",
                                      "htlib_version", "torch_version", "python_version")},
            "train_unlabelled": cfg.unlabelled, "test_unlabelled": unlabelled, "test_distractors": distractors,
            "base_episodes": base_result["episodes_seen"],
            "episodes_seen": base_result["episodes_seen"] + result["episodes_seen"],
            "test_accuracy": acc.accuracy, "ci95": acc.ci95, "test_episodes": acc.episodes,
            "wall_seconds": round(result["wall_seconds"] + time.perf_counter() - start, 1),  # arm + this test
        })
        print(f"{run_dir.name}: U_test = {unlabelled}, distractor classes = {distractors}: {acc}", flush=True)
        write_text_atomic(path, json.dumps(rows, indent=2))


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"Unknown method {method!r} for the semi-supervised experiment; choose from {METHODS}")
