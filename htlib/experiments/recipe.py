"""The training recipe, one choice at a time: what does each part of it buy at a fixed budget?

The design (20-way 1-shot Omniglot by default, C = 8, ``ht-all``):

- the **baseline** is today's defaults: AdamW at lr 1e-3, a 5% linear warm-up then a cosine decay,
  B episodes per step from the profile, the model's three departures from the reference on
  (docs/paper.md, section 6) and local features from the last extractor conv;
- every other **arm** changes ONE thing (`ARMS`: name -> the change in one line, the TrainConfig
  settings that make it); several put back a choice of the reference (docs/paper.md, section 2);
- every arm trains on the same number of episodes, the profile's ``RECIPE_BUDGETS`` (steps =
  episodes / B, so an arm with a larger B takes fewer steps), with the same seeds; it validates
  every 1/10 of its run on the same validation episodes and is tested, with its best-on-validation
  weights, on the same test episodes (the test batch is fixed at the baseline's, because the batch
  decides which episodes the seeded sampler draws). One exception, said in its description:
  ``sgd-reference`` trains B = 1 episode per step, so the same budget would take 16 times the
  baseline's steps at four times the cost per episode; it gets a quarter of the budget instead.

Each (arm, seed) is an ordinary run in ``results/runs/<profile>-recipe/<name>/`` (the name carries
what the arm changes, see htlib.runs.run_name; an arm with another B than the baseline's goes to
``<profile>-recipe-b<B>/``, as B is not part of a run's name); finished runs are not trained again, an
interrupted one resumes, and the tidy table ``results/recipe_<profile>_<dataset>.csv`` is rewritten
after every run. `recipe_gaps` gives each arm minus the baseline with a 95% CI.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from htlib.config import TrainConfig, check_runs
from htlib.data.protocols import protocol_settings
from htlib.errors import ConfigError
from htlib.profiles import Budget, budget_at, get_profile
from htlib.report import difference, seed_mean
from htlib.runs import Run, is_finished, make_run, run_folder, table_path
from htlib.train import train
from htlib.schemas import read_config, read_result, read_table
from htlib.utils import write_atomic

# The baseline arm's training at each profile; every arm trains on the same number of episodes (its
# share of them, Arm.budget), an arm with another B in episodes / B steps. quick: the budget of the
# quick single run (3,000 steps x 16).
RECIPE_BUDGETS = {"ci": Budget(4, 2), "quick": Budget(3_000, 16), "long": Budget(20_000, 16),
                  "paper": Budget(100_000, 32), "gpu": Budget(15_625, 64)}
COLUMNS = ["arm", "change", "seed", "steps", "episodes_per_step", "episodes", "val_accuracy", "test_accuracy",
           "ci95", "train_accuracy", "wall_seconds", "device", "htlib_version", "torch_version", "python_version"]
BASELINE = "baseline"


class Arm(NamedTuple):
    change: str  # what differs from the baseline, in one line
    overrides: dict  # the TrainConfig settings that make the change (model_options: HT options)
    budget: float = 1.0  # share of the profile's RECIPE_BUDGETS episodes this arm trains on


def _model(**options) -> dict:
    return {"model_options": options}


# In training order: the most informative first, so that a study cut short by its time limit still
# answers the main questions. First the model's departures from the reference (each put back),
# then the schedule and step size, the generator's size, the regularisers, and the slow SGD last.
ARMS: dict[str, Arm] = {
    BASELINE: Arm("today's defaults: AdamW lr 1e-3, 5% warm-up + cosine, B from the profile", {}),
    "local-both": Arm("local features from both extractor convs (the reference), not the last only",
                      _model(local_features_from="both")),
    "no-tie-logits": Arm("logits placeholders are learned vectors (the reference), not the label embeddings",
                         _model(tie_logits_placeholders=False)),
    "no-match-qk": Arm("query and key projections start independent (the reference), not equal",
                       _model(match_query_key_init=False)),
    "no-normalize": Arm("local and shared features not standardised (the reference)",
                        _model(normalize_features=False)),
    "reference-decay": Arm("the reference's smooth x0.95 decay, 40 periods over the run, not the cosine",
                           {"schedule": "reference"}),
    "constant-lr": Arm("constant lr after the warm-up, no decay", {"schedule": "constant"}),
    "lr-3e-3": Arm("lr 3e-3 (baseline 1e-3)", {"lr": 3e-3}),
    "lr-3e-4": Arm("lr 3e-4 (baseline 1e-3)", {"lr": 3e-4}),
    "batch-64-lr-2e-3": Arm("B = 64 episodes per step, lr 2e-3 (x sqrt 4 for 4x the baseline's 16), "
                            "episodes / 64 steps", {"episodes_per_step": 64, "lr": 2e-3}),
    "layers-4": Arm("4 transformer layers per generated layer (baseline 3)", _model(transformer_layers=4)),
    "layers-2": Arm("2 transformer layers per generated layer (baseline 3)", _model(transformer_layers=2)),
    "embed-64": Arm("label embedding d = 64 (baseline 32)", _model(label_dim=64)),
    "embed-16": Arm("label embedding d = 16 (baseline 32)", _model(label_dim=16)),
    "attn-0.5": Arm("attention width 0.5 x token width (the miniImageNet script), not 1.0",
                    _model(attention_width_factor=0.5)),
    "dropout-0.1": Arm("dropout 0.1 in the transformers (baseline 0, as the reference)", _model(dropout=0.1)),
    "smooth-0.1": Arm("label smoothing 0.1 in the training loss (baseline 0, as the reference)",
                      {"label_smoothing": 0.1}),
    "shift-2": Arm("every training image shifted by up to 2 pixels in x and y, on top of the rotations",
                   {"augment_shift": 2}),
    "wd-1e-2": Arm("AdamW weight decay 1e-2 (baseline 0, as the reference)", {"weight_decay": 1e-2}),
    # Larger batches at the same episodes mean fewer steps; the GPU runs need to know what that costs.
    "batch-64-lr-1e-3": Arm("B = 64 episodes per step at the baseline's lr 1e-3, episodes / 64 steps",
                            {"episodes_per_step": 64}),
    "batch-256-lr-2e-3": Arm("B = 256 episodes per step, lr 2e-3, episodes / 256 steps",
                             {"episodes_per_step": 256, "lr": 2e-3}),
    # One B = 1 step costs a quarter of a B = 16 step on 2 CPU cores (41 against 160 ms), so a
    # quarter of the episodes takes about the baseline's time.
    "sgd-reference": Arm("the reference's optimisation: plain SGD, B = 1, lr 0.02, reference decay, no warm-up "
                         "(gradient clip kept); a QUARTER of the episode budget, about the baseline's CPU time",
                         {"optimizer": "sgd", "episodes_per_step": 1, "lr": 0.02, "schedule": "reference",
                          "warmup_steps": 0}, budget=1 / 4),
}


# The fidelity study (same machinery, its own arms): each choice of the authors' code that this
# project's defaults depart from, put back one at a time, then all together; run on each protocol
# (htlib.data.protocols). The reference's numbers: docs/paper.md, section 2.
REFERENCE_MODEL = dict(tie_logits_placeholders=False, match_query_key_init=False, normalize_features=False,
                       label_embedding_per_layer=True, init="glorot", bn_eps=1e-3, feature_extractors="reference")
REFERENCE_OPTIMISATION = {"optimizer": "sgd", "episodes_per_step": 1, "lr": 0.02, "schedule": "reference",
                          "warmup_steps": 0}
FIDELITY_ARMS: dict[str, Arm] = {
    BASELINE: Arm("today's defaults (the recipe study's baseline)", {}),
    "reference-model": Arm("every model choice of the reference at once (the seven below)", _model(**REFERENCE_MODEL)),
    "per-layer-embeddings": Arm("one label-embedding table per generated layer (the reference), not one shared",
                                _model(label_embedding_per_layer=True)),
    "reference-extractors": Arm("the reference's feature extractors: 'valid' convs, both pooled outputs, one 1x1 "
                                "conv for the logits layer", _model(feature_extractors="reference")),
    "glorot-init": Arm("glorot-uniform weights and zero biases (TensorFlow's defaults), not PyTorch's",
                       _model(init="glorot")),
    "bn-eps-1e-3": Arm("BatchNorm epsilon 1e-3 (TensorFlow's), not 1e-5", _model(bn_eps=1e-3)),
    "no-tie-logits": ARMS["no-tie-logits"],
    "no-match-qk": ARMS["no-match-qk"],
    "no-normalize": ARMS["no-normalize"],
    # One B = 1 step costs a quarter of a B = 16 one on 2 CPU cores: a quarter of the episodes takes
    # about the baseline's time (as the recipe study's sgd-reference arm).
    "reference-all": Arm("the reference's model AND optimisation: plain SGD, B = 1, lr 0.02, x0.95 decay, no "
                         "warm-up (clip kept); a QUARTER of the episode budget, about the baseline's CPU time",
                         {**_model(**REFERENCE_MODEL), **REFERENCE_OPTIMISATION}, budget=1 / 4),
    "sgd-reference": ARMS["sgd-reference"],
    # Why does reference-all stay at chance while sgd-reference (this project's model, the same SGD)
    # leaves it? Under plain SGD a step is lr x gradient, so the start's scale matters as it does not
    # under AdamW: these two split the reference's model into its initialisation and the rest.
    "sgd-glorot": Arm("the reference's optimisation (as sgd-reference) with glorot-uniform weights and zero "
                      "biases; a QUARTER of the episode budget",
                      {**_model(init="glorot"), **REFERENCE_OPTIMISATION}, budget=1 / 4),
    "reference-all-torch-init": Arm("reference-all with PyTorch's initialisation instead of glorot-uniform; a "
                                    "QUARTER of the episode budget",
                                    {**_model(**{**REFERENCE_MODEL, "init": "torch"}), **REFERENCE_OPTIMISATION},
                                    budget=1 / 4),
}
# Neither half answers it (sgd-glorot leaves chance, reference-all-torch-init does not), so the rest
# of the reference model is put under the same SGD one part at a time: "sgd+<part>" is sgd-reference
# with that single model arm's change.
SGD_PARTS = ["no-normalize", "no-tie-logits", "reference-extractors", "per-layer-embeddings", "no-match-qk",
             "bn-eps-1e-3"]
FIDELITY_ARMS.update({
    f"sgd+{part}": Arm(f"the reference's optimisation (as sgd-reference) with {part} only; a QUARTER of the "
                       "episode budget", {**FIDELITY_ARMS[part].overrides, **REFERENCE_OPTIMISATION}, budget=1 / 4)
    for part in SGD_PARTS})
STUDIES = {"recipe": ARMS, "fidelity": FIDELITY_ARMS}


@dataclass
class RecipeSpec:
    """The study: which arms, at which profile's budget, with which seeds, on which protocol.

    `study` picks the arms: "recipe" (ARMS) or "fidelity" (FIDELITY_ARMS); `protocol` the episodes
    (htlib.data.protocols; the recipe study is on "vinyals" only)."""

    profile: str = "quick"
    seeds: list[int] = field(default_factory=lambda: [0])
    arms: list[str] | None = None  # default: every arm of the study; the baseline is always in
    data_dir: str | None = None
    device: str = "auto"
    dataset: str = "omniglot"
    ways: int = 20
    study: str = "recipe"
    protocol: str = "vinyals"

    def __post_init__(self) -> None:
        if self.study not in STUDIES:
            raise ConfigError(f"Unknown study {self.study!r}; choose one of {list(STUDIES)}")
        protocol_settings(self.protocol)  # a clear error for an unknown name
        if self.study == "recipe" and self.protocol != "vinyals":
            raise ConfigError("The recipe study runs on the vinyals protocol; use study='fidelity' for 'paper'.")

    @property
    def arm_table(self) -> dict[str, Arm]:
        return STUDIES[self.study]

    @property
    def kind(self) -> str:
        """Its table's kind: "recipe", or "fidelity_<protocol>" (results/fidelity_paper_quick_omniglot.csv)."""
        return self.study if self.study == "recipe" else f"{self.study}_{self.protocol}"

    def arm_names(self) -> list[str]:
        """The study's arms in training order: ARMS order by default; else the order asked, the
        baseline first unless placed elsewhere (it is always in: every gap is measured against it)."""
        if self.arms is None:
            return list(self.arm_table)
        asked = list(dict.fromkeys(_checked_arms(self.arms, self.arm_table)))
        return asked if BASELINE in asked else [BASELINE, *asked]

    def config(self, arm: str, seed: int) -> TrainConfig:
        """The run of `arm` with `seed`: the task and budget of every arm, then the arm's change."""
        base = budget_at(RECIPE_BUDGETS, self.profile, "recipe study")
        chosen = self.arm_table[arm]
        settings = {"method": "ht-all", **protocol_settings(self.protocol), **copy.deepcopy(chosen.overrides)}
        batch = settings.pop("episodes_per_step", base.episodes_per_step)
        steps = max(1, round(base.episodes * chosen.budget / batch))
        return TrainConfig(
            dataset=self.dataset, data_dir=self.data_dir, ways=self.ways, shots=1, queries=3, channels=8,
            profile=self.profile, seed=seed, device=self.device, steps=steps, episodes_per_step=batch,
            val_every=max(min(2, steps), steps // 10),  # every tenth; at least 2 steps apart (smoke runs)
            test_batch_size=min(2 * base.episodes_per_step, 64),
            **settings)

    def run(self, arm: str, seed: int) -> Run:
        """The run of `arm` with `seed` in its folder (arms with another B than the baseline's apart)."""
        cfg = self.config(arm, seed)
        batch = cfg.episodes_per_step
        base_batch = budget_at(RECIPE_BUDGETS, self.profile, "recipe study").episodes_per_step
        # both studies share the folders: an arm of one that the other has too (the baseline, the
        # departures put back) is the same run, trained once; runs on the paper protocol carry it in their name
        return make_run(cfg, group="recipe" if batch == base_batch else f"recipe-b{batch}")

    def runs(self) -> list[tuple[str, Run]]:
        """(arm, run) in training order: every arm with the first seed, then with the next, ..."""
        return [(arm, self.run(arm, seed)) for seed in self.seeds for arm in self.arm_names()]

    def seeds_on_disk(self) -> list[int]:
        """The seeds of every finished run in this profile's recipe folders, whichever arms asked for them."""
        root = run_folder(self.config(BASELINE, 0)).parents[1]
        seeds = set()
        for saved in root.glob(f"{self.profile}-recipe*/*/config.json"):
            if (saved.parent / "result.json").is_file():
                seeds.add(read_config(saved)["seed"])
        return sorted(seeds)

    def check(self) -> list[tuple[str, Run]]:
        """The runs, each checked (settings, task against the data, a folder of its own) before any trains."""
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise ConfigError(f"seeds must be a non-empty list, e.g. [0], got {self.seeds!r}")
        if get_profile(self.profile).ht_options:
            raise ConfigError(f"Profile {self.profile!r} trains the recommended recipe already, so its baseline would "
                              "not be today's defaults; run the recipe study at quick, long or paper.")
        runs = self.runs()
        folders = [run.folder for _, run in runs]
        if len(set(folders)) != len(folders):
            raise ConfigError("Two arms of the recipe study would share a run folder; give the later arm a "
                              "setting that htlib.runs.run_name shows.")
        check_runs([run.config for _, run in runs])
        return runs

    @property
    def table_path(self) -> Path:
        """results/<kind>_<profile>_<dataset>.csv; smoke (ci) tables go to the git-ignored runs/."""
        return table_path(self.kind, self.profile, self.dataset)


def _checked_arms(names: list[str], table: dict[str, Arm]) -> list[str]:
    if not isinstance(names, (list, tuple)):
        raise ConfigError(f"arms must be a list of names, e.g. ['lr-3e-3'], got {names!r}")
    unknown = [name for name in names if name not in table]
    if unknown:
        raise ConfigError(f"Unknown arms {unknown}; choose from {list(table)}")
    return list(names)


def run_recipe(spec: RecipeSpec, progress: bool = True, max_minutes: float | None = None,
               arms: list[str] | None = None) -> pd.DataFrame:
    """Train the study's missing runs one at a time (resuming an interrupted one), then return the
    table of the finished ones. `arms` trains only those arms of the study now (None: all);
    `max_minutes` starts no new run after that many minutes (a later call trains the rest)."""
    if max_minutes is not None and not max_minutes >= 0:
        raise ConfigError(f"max_minutes must be >= 0 or None, got {max_minutes!r}")
    runs = spec.check()
    if arms is not None:
        outside = set(_checked_arms(arms, spec.arm_table)) - set(spec.arm_names())
        if outside:
            raise ConfigError(f"Arms {sorted(outside)} are not in this study (RecipeSpec.arms = {spec.arms}).")
        runs = [(arm, run) for arm, run in runs if arm in arms]
    todo = []
    for arm, run in runs:
        if is_finished(run):
            print(f"{arm} (seed {run.config.seed}): done before, skipped")
        else:
            todo.append((arm, run))
    start = time.monotonic()
    trained = 0
    for arm, run in todo:
        if max_minutes is not None and time.monotonic() - start >= 60 * max_minutes:
            break
        cfg = run.config
        print(f"[{trained + 1}/{len(todo)}] {arm} (seed {cfg.seed}): {cfg.steps} steps x {cfg.episodes_per_step} "
              f"episodes into {run.folder.name}", flush=True)
        train(run, resume=True, progress=progress)
        trained += 1
        _write(spec, collect(spec))
    table = collect(spec)
    _write(spec, table)
    if trained < len(todo):
        print(f"{len(todo) - trained} of {len(runs)} recipe runs not trained (time limit of {max_minutes} min); "
              "run the study again to train them.")
    return table


def collect(spec: RecipeSpec) -> pd.DataFrame:
    """One tidy row per finished (arm, seed) of the profile's study, in ARMS order then seed order:
    every arm and seed on disk, not only those `spec` asks for, so that training a few arms or a new
    seed never drops the other rows from the table."""
    rows = []
    for seed in sorted(set(spec.seeds) | set(spec.seeds_on_disk())):
        for arm in spec.arm_table:
            run = spec.run(arm, seed)
            if (run.folder / "result.json").is_file():
                rows.append(_row(spec, arm, run))
    order = list(spec.arm_table)
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(
        ["arm", "seed"], key=lambda c: c.map(order.index) if c.name == "arm" else c, kind="stable", ignore_index=True)


def _row(spec: RecipeSpec, arm: str, run: Run) -> dict:
    result = read_result(run.folder / "result.json")
    return {
        "arm": arm, "change": spec.arm_table[arm].change, "seed": run.config.seed, "steps": result["steps"],
        "episodes_per_step": run.config.episodes_per_step, "episodes": result["episodes_seen"],
        "val_accuracy": result["best_val_accuracy"], "test_accuracy": result["test_accuracy"],
        "ci95": result["ci95"], "train_accuracy": late_train_accuracy(read_table(run.folder / "metrics.csv", "metrics")),
        **{k: result[k] for k in ("wall_seconds", "device", "htlib_version", "torch_version", "python_version")},
    }


def late_train_accuracy(metrics: pd.DataFrame) -> float:
    """Mean training accuracy logged over the last 10% of the steps: with the validation accuracy
    it tells over-fitting (high here, low there) from under-training (low in both)."""
    late = metrics[metrics["step"] > 0.9 * metrics["step"].max()]
    return float(late["accuracy"].mean())


# An arm whose episodes differ from the baseline's by more than this fraction trained on another
# budget (a batch size that does not divide the episodes evenly rounds the steps: 48,128 for 48,000).
BUDGET_TOLERANCE = 0.05


def recipe_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy of each arm minus the baseline's on the same seeds, seeds averaged, with a 95% CI.

    Paired by seed: an arm trained with seeds 0 and 1 is compared with the baseline's mean over
    seeds 0 and 1, one trained with seed 0 only with the baseline's seed 0 (the seed decides the
    training episodes and the initial weights). As htlib.report.gaps, the CI treats the two
    accuracies as independent (conservative, since every arm is tested on the same episodes) and
    holds the test episodes' noise only; the baseline's spread across seeds shows the training's.
    The verdict is 'better' / 'worse' when the CI excludes 0, and 'other budget' for an arm trained
    on a different number of episodes than the baseline (beyond BUDGET_TOLERANCE: e.g. the plain-SGD
    arms' quarter budget), whose gap mixes its change with the budget's and ranks nothing.
    """
    if BASELINE not in set(table["arm"]):
        raise ValueError("The recipe table has no baseline row: train the baseline arm first.")
    base_rows = table[table["arm"] == BASELINE].set_index("seed")
    rows = []
    for arm, own in table[table["arm"] != BASELINE].groupby("arm", sort=False):
        seeds = sorted(set(own["seed"]) & set(base_rows.index))
        if not seeds:
            raise ValueError(f"Arm {arm!r} has no seed in common with the baseline ({sorted(own['seed'])}); "
                             "train the baseline with that seed.")
        arm_mean, base_mean = seed_mean(own.set_index("seed").loc[seeds]), seed_mean(base_rows.loc[seeds])
        gap = difference(arm_mean, base_mean)
        episodes, base_episodes = own["episodes"].mean(), base_rows.loc[seeds, "episodes"].mean()
        if abs(episodes / base_episodes - 1) > BUDGET_TOLERANCE:
            gap["verdict"] = "other budget"
        rows.append({"arm": arm, "change": own["change"].iloc[0], "seeds": len(seeds),
                     "test_accuracy": arm_mean.test_accuracy, **gap})
    return pd.DataFrame(rows, columns=["arm", "change", "seeds", "test_accuracy", "gap", "ci95", "verdict"])


def arms_to_draw(gaps: pd.DataFrame, best: int = 2, worst: int = 3) -> list[str]:
    """The baseline and, of the arms trained on its budget, the `best` with the largest gap and the
    `worst` with the smallest (recipe_gaps), best first: few enough lines to tell apart in one
    figure, and the two ends of the study, where its curves differ most."""
    ranked = gaps[gaps["verdict"] != "other budget"].sort_values("gap", ascending=False)["arm"].tolist()
    chosen = ranked[:best] + [arm for arm in ranked[-worst:] if arm not in ranked[:best]] if worst else ranked[:best]
    return [BASELINE, *chosen]


def _write(spec: RecipeSpec, table: pd.DataFrame) -> None:
    write_atomic(spec.table_path, lambda tmp: table.to_csv(tmp, index=False))


def fidelity_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The fidelity study side by side: one row per arm, for each protocol (tables: protocol -> its
    results/fidelity_<protocol>_*.csv) the arm's test accuracy over its seeds and its gap to that
    protocol's baseline on the seeds both have (recipe_gaps); arms with no
    run yet are left out."""
    rows = {arm: {"arm": arm, "change": FIDELITY_ARMS[arm].change} for arm in FIDELITY_ARMS}
    for protocol, table in tables.items():
        if table.empty or BASELINE not in set(table["arm"]):
            continue
        for arm, own in table.groupby("arm"):
            rows[arm].update({f"{protocol} accuracy": own["test_accuracy"].mean(), f"{protocol} seeds": len(own)})
        for g in recipe_gaps(table).itertuples():  # seeds: those the arm shares with the baseline
            rows[g.arm].update({f"{protocol} seeds": g.seeds, f"{protocol} gap": g.gap, f"{protocol} ci95": g.ci95,
                                f"{protocol} verdict": g.verdict})
    out = pd.DataFrame([r for r in rows.values() if len(r) > 2])
    return out.reset_index(drop=True)


def protocol_gap(tables: dict[str, pd.DataFrame], protocol: str = "paper", against: str = "vinyals") -> dict | None:
    """The baseline on `protocol` minus the baseline on `against`, on the seeds both have (None
    while either is missing): how much of an accuracy is the protocol's, not the model's."""
    bases = {p: tables[p][tables[p]["arm"] == BASELINE].set_index("seed") for p in (protocol, against)
             if p in tables and not tables[p].empty}
    if len(bases) < 2:
        return None
    seeds = sorted(set(bases[protocol].index) & set(bases[against].index))
    if not seeds:
        return None
    mine, theirs = seed_mean(bases[protocol].loc[seeds]), seed_mean(bases[against].loc[seeds])
    return {"seeds": len(seeds), protocol: mine.test_accuracy, against: theirs.test_accuracy,
            **difference(mine, theirs)}
