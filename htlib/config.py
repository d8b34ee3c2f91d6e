"""What a run is made of: `TrainConfig`, its resolution against a profile, and the checks that
refuse an impossible request before any data is read or any step runs.

A config names its compute budget by profile (`htlib.profiles`); `resolved()` fills every field
left at None from that profile (and, for the HT, the profile's HT options under its own) and checks
the result. Resolution happens once,
when a run is made (`htlib.runs.make_run`); the training loop only ever sees resolved configs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from htlib.data import DATASETS
from htlib.data.omniglot import SPLITS
from htlib.data.task import Task
from htlib.errors import ConfigError
from htlib.methods import get_method, model_options, upgrade_stored_config
from htlib.models.hypertransformer import LOCAL_FEATURES_FROM
from htlib.profiles import get_profile
from htlib.optim import OPTIMIZERS, PRECISIONS, SCHEDULES
from htlib.speed import episodes_on_device
from htlib.utils import resolve_device



@dataclass
class TrainConfig:
    """Everything that defines a run. `None` fields take the profile's value (see `resolved`)."""

    # task
    dataset: str = "omniglot"
    split_scheme: str = "vinyals"
    data_dir: str | None = None
    ways: int = 20
    shots: int = 1
    queries: int = 3  # per class: 20-way x 3 = the 60 queries of the reference script
    unlabelled: int = 0  # unlabelled support samples per class (semi-supervised)
    distractors: int = 0
    augment_rotations: bool = True
    augment_shift: int = 0  # training images moved by up to this many pixels in x and y (0 = not)
    # queries drawn apart from the support images (a query may repeat one), in training and testing,
    # as the reference does; part of the "paper" protocol (htlib.data.protocols)
    independent_queries: bool = False
    # model
    method: str = "ht-all"  # a name of htlib.methods (e.g. "protonet", "ht-logits", "ht-2")
    channels: int = 8
    # refinements of the method's model, e.g. the HT's transformer_layers (not what makes the method)
    model_options: dict = field(default_factory=dict)
    # a model.pt (state_dict) to start from instead of a random init; relative = to the project root
    init_from: str | None = None
    # optimisation
    profile: str = "quick"
    steps: int | None = None
    episodes_per_step: int | None = None
    optimizer: str = "adamw"  # or "sgd": plain SGD without momentum, as the reference (OPTIMIZERS)
    schedule: str = "cosine"  # learning-rate shape after the warm-up (SCHEDULES)
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int | None = None  # default: 5% of the steps
    grad_clip: float = 1.0
    label_smoothing: float = 0.0  # of the training loss only (the reference: 0)
    # evaluation
    val_every: int | None = None
    val_episodes: int | None = None
    test_episodes: int | None = None
    # episodes per test batch; None: min(2 B, 64). The batch decides which test episodes the seeded
    # sampler draws, so runs with different B compare on the same episodes only if this is fixed.
    test_batch_size: int | None = None
    # speed (htlib.speed)
    episodes_on_device: bool | None = None  # DeviceEpisodeSampler; None: on a GPU, not on the CPU
    precision: str = "fp32"  # or "bf16": the training step under bf16 autocast (PRECISIONS)
    compile: bool = False  # torch.compile the model's step
    # bookkeeping
    seed: int = 0
    device: str = "auto"

    def resolved(self) -> "TrainConfig":
        """A checked copy with every None replaced by the profile's value.

        Raises ConfigError for any setting that cannot work, before data is read or a step runs.
        """
        prof = get_profile(self.profile)
        if not isinstance(self.model_options, dict):
            raise ConfigError(f"model_options must be a dict, got {type(self.model_options).__name__}.")
        method = get_method(self.method)
        options = {**prof.ht_options, **self.model_options} if method.generates_layers else self.model_options
        model_options(method.name, options)  # refuses an option that would make it another method
        out = dataclasses.replace(self, model_options=dict(options))
        out.steps = self.steps if self.steps is not None else prof.train_steps
        pick = lambda own, default: default if own is None else own  # noqa: E731 (0 is a value, not "unset")
        out.episodes_per_step = pick(self.episodes_per_step, prof.episodes_per_step)
        out.val_every = pick(self.val_every, prof.val_every)
        out.val_episodes = pick(self.val_episodes, prof.val_episodes)
        out.test_episodes = pick(self.test_episodes, prof.test_episodes)
        steps_ok = isinstance(out.steps, int) and not isinstance(out.steps, bool)  # else _check names it
        out.warmup_steps = self.warmup_steps if self.warmup_steps is not None else max(1, out.steps // 20) if \
            steps_ok else 1
        if self.episodes_on_device is None:  # a different episode stream: fixed in the run's config now
            out.episodes_on_device = episodes_on_device(None, resolve_device(self.device))
        out._check()
        return out

    def _check(self) -> None:
        """Every setting that needs no data, with a message that says what would work."""
        if self.dataset not in DATASETS:
            raise ConfigError(f"Unknown dataset {self.dataset!r}; choose one of {DATASETS}")
        if self.dataset == "omniglot" and self.split_scheme not in SPLITS:
            raise ConfigError(f"Unknown Omniglot split scheme {self.split_scheme!r}; choose one of {SPLITS}")
        whole = {"ways": 2, "shots": 1, "queries": 1, "unlabelled": 0, "distractors": 0, "channels": 1,
                 "steps": 1, "episodes_per_step": 1, "warmup_steps": 0, "val_every": 1, "val_episodes": 1,
                 "test_episodes": 1, "seed": 0, "augment_shift": 0}
        if self.test_batch_size is not None:
            whole["test_batch_size"] = 1
        for name, low in whole.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                hint = " (a task needs at least 2 classes to tell apart)" if name == "ways" else ""
                raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}{hint}.")
        for name, low, strict in [("lr", 0.0, True), ("weight_decay", 0.0, False), ("grad_clip", 0.0, True)]:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or (
                    value <= low if strict else value < low):
                raise ConfigError(f"{name} must be a number {'>' if strict else '>='} {low}, got {value!r}.")
        smoothing = self.label_smoothing
        if not isinstance(smoothing, (int, float)) or isinstance(smoothing, bool) or not 0 <= smoothing < 1:
            raise ConfigError(f"label_smoothing must be a number in [0, 1), got {self.label_smoothing!r}.")
        for name in ("augment_rotations", "independent_queries", "episodes_on_device", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        if self.distractors and not self.unlabelled:
            raise ConfigError("distractor classes add unlabelled samples: set unlabelled >= 1 as well.")
        get_method(self.method)
        if not isinstance(self.model_options, dict):
            raise ConfigError(f"model_options must be a dict, got {type(self.model_options).__name__}.")
        if "local_features_from" in self.model_options:
            _check_choice("local_features_from", self.model_options["local_features_from"], LOCAL_FEATURES_FROM)
        resolve_device(self.device)  # unknown names and absent GPUs fail here

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def task(self) -> Task:
        """The task of this run (dataset, split, episode shape); a new Task, whose splits load on use."""
        return Task.of(self)

    @classmethod
    def from_stored(cls, stored: dict) -> "TrainConfig":
        """The config of a run's config.json or checkpoint, also one written before methods had
        names (htlib.methods.upgrade_stored_config)."""
        return cls(**upgrade_stored_config(stored))


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}; choose one of {choices}")


# Settings that say how a run is computed, not which run it is: the same run may move between
# machines and data folders; compiling does the same arithmetic; the two samplers draw episodes
# from the same distribution (a resumed run must keep its sampler: htlib.train checks that).
HOW_FIELDS = ("device", "data_dir", "compile", "episodes_on_device")


def config_differences(stored: dict, cfg: TrainConfig) -> dict:
    """{field: (stored, wanted)} for every setting in which a saved run differs from `cfg`.

    HOW_FIELDS do not count; a field the saved run predates counts as its default, so adding a
    field keeps old runs valid, and a config from before methods had names is read in today's form.
    """
    stored = upgrade_stored_config(stored)
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(TrainConfig)}
    wanted = cfg.to_dict()
    return {k: (stored.get(k, defaults[k]), v) for k, v in wanted.items()
            if k not in HOW_FIELDS and stored.get(k, defaults[k]) != v}


def check_runs(configs: list[TrainConfig]) -> None:
    """Check the settings of every run, and each distinct task once against the data, before any trains."""
    for task in dict.fromkeys(cfg.resolved().task for cfg in configs):
        task.check()


def checked_config(**settings) -> TrainConfig:
    """A notebook's parameters as a resolved TrainConfig, checked as the CLI checks them: wrong types,
    impossible values and tasks the data cannot hold fail here, in the notebook's first cell."""
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"Unknown settings {unknown}; see htlib.train.TrainConfig for the valid ones.")
    cfg = TrainConfig(**settings).resolved()
    cfg.task.check()
    return cfg


def check_notebook_parameters(history: list[str] | None = None) -> None:
    """In a notebook run by papermill: refuse a passed parameter the notebook does not have (papermill
    itself only logs "Passed unknown parameter" and runs the notebook at its defaults).

    `history` is the sources of the cells run so far, IPython's `In` by default. papermill puts its
    cell ("# Parameters", then the assignments) right after the notebook's parameters cell, so the
    names of the one are compared with those of the other. Outside papermill nothing is checked."""
    import ast

    if history is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
        history = list(shell.user_ns.get("In", [])) if shell is not None else []
    injected = [i for i, source in enumerate(history) if i and source.lstrip().startswith("# Parameters")]
    if not injected:
        return

    def names(source: str) -> set[str]:
        return {target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}

    known, passed = names(history[injected[-1] - 1]), names(history[injected[-1]])
    unknown = sorted(passed - known)
    if unknown:
        raise ConfigError(f"Unknown notebook parameter{'s' if len(unknown) > 1 else ''} {unknown}; this notebook "
                          f"takes {sorted(known)}.")
