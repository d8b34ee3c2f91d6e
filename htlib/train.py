"""One training loop for every method: config, progress bar, validation, checkpoints, resume.

Every method is an nn.Module mapping (support images, support labels, query images, N) to
query logits, so this loop, the evaluation and the result rows are shared by all of them.

Departures from the reference scripts (which ran 4M single-episode plain-SGD steps with a
x0.95 step decay every 100k steps): we batch B episodes per step and use AdamW with a short
linear warm-up and a cosine decay, plus gradient-norm clipping. That reaches useful accuracy
with orders of magnitude fewer steps; the paper's numbers come from far longer training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from htlib import checkpoints
from htlib.data import DATASETS, EpisodeSampler, load_split
from htlib.data.omniglot import SPLITS
from htlib.errors import CheckpointError, ConfigError, RunExistsError, RunLockedError
from htlib.evaluate import Accuracy, episode_logits, evaluate, per_episode_accuracy
from htlib.models import CNNSpec, HTConfig, HyperTransformer
from htlib.profiles import get_profile
from htlib.utils import resolve_device, seed_everything, write_atomic, write_text_atomic

METHODS = ("ht", "protonet", "maml")
EVAL_SEED = 2022  # test episodes are the same for every method and training seed: paired comparisons


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
    # model
    method: str = "ht"
    generate: str | int = "all"  # HT: "all", "logits" or the number of last conv layers
    channels: int = 8
    model_options: dict = field(default_factory=dict)  # extra HTConfig fields, e.g. transformer_layers
    # a model.pt (state_dict) to start from instead of a random init; relative = to the project root
    init_from: str | None = None
    # optimisation
    profile: str = "quick"
    steps: int | None = None
    episodes_per_step: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int | None = None  # default: 5% of the steps
    grad_clip: float = 1.0
    # evaluation
    val_every: int | None = None
    val_episodes: int | None = None
    test_episodes: int | None = None
    # bookkeeping
    seed: int = 0
    device: str = "auto"

    def resolved(self) -> "TrainConfig":
        """A checked copy with every None replaced by the profile's value.

        Raises ConfigError for any setting that cannot work, before data is read or a step runs.
        """
        prof = get_profile(self.profile)
        if self.method not in METHODS:
            raise ConfigError(f"Unknown method {self.method!r}; choose one of {METHODS}")
        out = dataclasses.replace(self, model_options=dict(self.model_options))
        out.steps = self.steps if self.steps is not None else prof.train_steps
        pick = lambda own, default: default if own is None else own  # noqa: E731 (0 is a value, not "unset")
        out.episodes_per_step = pick(self.episodes_per_step, prof.episodes_per_step)
        out.val_every = pick(self.val_every, prof.val_every)
        out.val_episodes = pick(self.val_episodes, prof.val_episodes)
        out.test_episodes = pick(self.test_episodes, prof.test_episodes)
        out.warmup_steps = self.warmup_steps if self.warmup_steps is not None else max(1, out.steps // 20)
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
                 "test_episodes": 1, "seed": 0}
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
        if self.distractors and not self.unlabelled:
            raise ConfigError("distractor classes add unlabelled samples: set unlabelled >= 1 as well.")
        if self.method == "ht" and not (self.generate in ("all", "logits") or (
                isinstance(self.generate, int) and not isinstance(self.generate, bool) and self.generate >= 0)):
            raise ConfigError(f"generate must be 'all', 'logits' or a number of last conv layers, "
                              f"got {self.generate!r}.")
        if not isinstance(self.model_options, dict):
            raise ConfigError(f"model_options must be a dict, got {type(self.model_options).__name__}.")
        resolve_device(self.device)  # unknown names and absent GPUs fail here

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def config_differences(stored: dict, cfg: TrainConfig) -> dict:
    """{field: (stored, wanted)} for every setting in which a saved run differs from `cfg`.

    The device and the data directory do not count (the same run may move between machines); a
    field the saved run predates counts as its default, so adding a field keeps old runs valid.
    """
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(TrainConfig)}
    wanted = cfg.to_dict()
    return {k: (stored.get(k, defaults[k]), v) for k, v in wanted.items()
            if k not in ("device", "data_dir") and stored.get(k, defaults[k]) != v}


def method_label(cfg: TrainConfig) -> str:
    """The name a method carries in result tables: ht-all, ht-logits, ht-2, protonet, maml, ...

    MAML is "maml" with its defaults (second order, 5 inner steps); first order is "fomaml", and
    another number of inner steps adds "-<n>step" (e.g. "fomaml-1step").
    """
    if cfg.method == "ht":
        return f"ht-{cfg.generate}"
    if cfg.method == "maml":
        name = "fomaml" if cfg.model_options.get("first_order", False) else "maml"
        steps = cfg.model_options.get("inner_steps", 5)
        return name if steps == 5 else f"{name}-{steps}step"
    if cfg.method == "protonet" and cfg.model_options.get("soft_kmeans_steps", 0):
        return "protonet-softkmeans"
    return cfg.method


def build_model(cfg: TrainConfig, image_shape: tuple[int, int, int]) -> nn.Module:
    """The model of `cfg.method` for images of shape (C, H, W); `model_options` go to its constructor."""
    from htlib.models import MAML, ProtoNet  # baselines on the same target CNN

    channels, size, _ = image_shape
    spec = CNNSpec(image_channels=channels, image_size=size, channels=cfg.channels)
    try:
        if cfg.method == "ht":
            return HyperTransformer(HTConfig(cnn=spec, generate=cfg.generate, max_ways=cfg.ways, **cfg.model_options))
        if cfg.method == "protonet":
            return ProtoNet(spec, **cfg.model_options)
        return MAML(spec, max_ways=cfg.ways, **cfg.model_options)
    except TypeError as exc:  # an option the model does not have
        raise ConfigError(f"model_options {cfg.model_options} do not fit method {cfg.method!r}: {exc}") from None


def count_parameters(model: nn.Module, ways: int) -> dict[str, int]:
    if hasattr(model, "parameter_counts"):
        return model.parameter_counts(ways)
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "generated_per_episode": 0}


def _schedule(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _project_path(path: str) -> Path:
    from htlib.data.paths import PROJECT_ROOT

    full = Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path
    if not full.is_file():
        raise CheckpointError(f"init_from: no weights at {full}; train that run first or fix the path.")
    return full


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run between two steps, after writing its checkpoint."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        self.step, self.checkpoint = step, checkpoint
        where = f"checkpoint in {checkpoint}" if checkpoint else "nothing saved (no run folder)"
        super().__init__(f"interrupted after step {step}: {where}")


class _InterruptAfterStep:
    """While active, the first Ctrl-C (SIGINT) only asks the loop to stop after the current step,
    so that the checkpoint holds a whole step; a second Ctrl-C stops at once, discarding that step
    (the last checkpoint on disk stays as it was). Only the main thread can catch signals; in any
    other thread Ctrl-C keeps its usual meaning."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        sys.stderr.write("\nCtrl-C: stopping after this step and saving a checkpoint "
                         "(Ctrl-C again stops at once, without saving).\n")

    def __enter__(self) -> "_InterruptAfterStep":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike | None):
    """Hold RUN_DIR/.lock while training: a second process that wants the same folder is refused
    at once, before it reads any data. The lock is the operating system's (released when the
    process dies), so a crash never leaves a stale lock behind."""
    if run_dir is None:
        yield
        return
    from filelock import FileLock, Timeout

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    lock = FileLock(Path(run_dir, ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunLockedError(
            f"Another process is training into {run_dir} (it holds {Path(run_dir, '.lock')}). "
            f"Wait for it to finish, or use another run folder.") from None
    try:
        yield
    finally:
        lock.release()


def _versions() -> dict[str, str]:
    import htlib

    return {"htlib": htlib.__version__, "torch": torch.__version__, "python": platform.python_version()}


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    metrics: pd.DataFrame  # one row per logged step (train) or validation
    result: dict  # test accuracy, ci95, steps, wall time, ... (also in run_dir/result.json)


def check_task(cfg: TrainConfig, splits: dict | None = None) -> None:
    """Refuse a task that one of the splits cannot hold (more ways than classes, more shots + queries
    than drawings), naming the split. `splits` maps names to loaded splits; missing ones are loaded."""
    for split in ("train", "val", "test"):
        data = (splits or {}).get(split) or load_split(cfg.dataset, split, cfg.data_dir, split_scheme=cfg.split_scheme)
        try:
            EpisodeSampler(data, cfg.ways, cfg.shots, cfg.queries, cfg.unlabelled, cfg.distractors)
        except ConfigError as exc:
            raise ConfigError(f"The {split} episodes cannot be drawn: {exc}") from None


def check_runs(configs: list[TrainConfig]) -> None:
    """Check the settings of every run, and each distinct task once against the data, before any trains."""
    tasks = {}
    for cfg in configs:
        resolved = cfg.resolved()
        key = (resolved.dataset, resolved.data_dir, resolved.split_scheme, resolved.ways, resolved.shots,
               resolved.queries, resolved.unlabelled, resolved.distractors)
        tasks.setdefault(key, resolved)
    for cfg in tasks.values():
        check_task(cfg)


def checked_config(**settings) -> TrainConfig:
    """A notebook's parameters as a resolved TrainConfig, checked as the CLI checks them: wrong types,
    impossible values and tasks the data cannot hold fail here, in the notebook's first cell."""
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"Unknown settings {unknown}; see htlib.train.TrainConfig for the valid ones.")
    cfg = TrainConfig(**settings).resolved()
    check_task(cfg)
    return cfg


class Trainer:
    """Holds the state of one run so that it can be checkpointed and resumed exactly."""

    def __init__(self, config: TrainConfig, run_dir: str | os.PathLike | None = None) -> None:
        self.cfg = cfg = config.resolved()
        self.device = resolve_device(cfg.device)
        self.run_dir = Path(run_dir) if run_dir else None
        seed_everything(cfg.seed)
        load = lambda split: load_split(cfg.dataset, split, cfg.data_dir, split_scheme=cfg.split_scheme)
        self.train_data, self.val_data = load("train"), load("val")
        # every split must hold the task: checked now, not at the first validation after minutes of training
        check_task(cfg, {"train": self.train_data, "val": self.val_data, "test": load("test")})
        self.sampler = EpisodeSampler(
            self.train_data, cfg.ways, cfg.shots, cfg.queries, cfg.unlabelled, cfg.distractors,
            cfg.episodes_per_step, cfg.augment_rotations, seed=cfg.seed)
        self.model = build_model(cfg, self.train_data.image_shape)
        if cfg.init_from:
            path = _project_path(cfg.init_from)
            checkpoints.load_weights(self.model, checkpoints.load(path, "weights"), path)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(cfg))
        self.step = 0
        self.rows: list[dict] = []
        self.window: list[tuple[float, float]] = []  # (loss, accuracy) of the steps since the last log row
        self.best_val = -1.0
        self.best_state: dict | None = None
        self.elapsed = 0.0  # training seconds, summed over resumed sessions

    # ------------------------------------------------------------ checkpoints

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / "checkpoint.pt" if self.run_dir else None

    def save(self) -> None:
        """Write the whole state after a finished step; only tensors and plain data (see checkpoints)."""
        if self.run_dir is None:
            return
        checkpoints.save({
            "config": self.cfg.to_dict(), "step": self.step, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.generator.get_state(), "rows": self.rows, "window": self.window,
            "best_val": self.best_val, "best_state": self.best_state, "elapsed": self.elapsed,
            "torch_rng": torch.get_rng_state(),
        }, self.checkpoint_path)
        self._write_metrics()

    def restore(self) -> bool:
        """Load the run's checkpoint if there is one; refuse one written for another config."""
        path = self.checkpoint_path
        if path is None or not path.is_file():
            return False
        # on the CPU: RNG states must stay CPU tensors; load_state_dict moves weights to the device
        state = checkpoints.load(path)
        if not isinstance(state, dict) or not {"config", "step", "model", "optimizer"} <= state.keys():
            raise CheckpointError(f"{path} is not an htlib training checkpoint; delete it to start afresh.")
        differ = config_differences(state["config"], self.cfg)
        if differ:
            raise ConfigError(
                f"{path} was written by a run with a different configuration ({differ}, "
                f"as (checkpoint, now)). Use another run directory, or the same settings to resume.")
        checkpoints.load_weights(self.model, state["model"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.generator.set_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.rows, self.window = state["step"], state["rows"], state.get("window", [])
        self.best_val, self.best_state, self.elapsed = state["best_val"], state["best_state"], state["elapsed"]
        return True

    def _write_metrics(self) -> None:
        if self.run_dir is None or not self.rows:
            return
        rows = pd.DataFrame(self.rows)
        write_atomic(self.run_dir / "metrics.csv", lambda tmp: rows.to_csv(tmp, index=False))

    # ------------------------------------------------------------ the loop

    def validate(self) -> Accuracy:
        cfg = self.cfg
        sampler = EpisodeSampler(self.val_data, cfg.ways, cfg.shots, cfg.queries, cfg.unlabelled,
                                 cfg.distractors, min(cfg.val_episodes, 32), seed=EVAL_SEED + 1)
        return evaluate(self.model, sampler, cfg.val_episodes, self.device)

    def train_step(self) -> tuple[float, float]:
        episode = self.sampler.sample().to(self.device)
        logits = episode_logits(self.model, episode)  # (B, N*Q, N)
        loss = F.cross_entropy(logits.flatten(0, 1), episode.query_labels.flatten())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"The training loss became {loss.item()} at step {self.step}. Lower the learning rate "
                f"(now {self.cfg.lr}) or the gradient clip ({self.cfg.grad_clip}); the last good "
                f"checkpoint is {self.checkpoint_path or 'not kept (no run_dir)'}.")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        acc = per_episode_accuracy(logits.detach(), episode.query_labels).mean()
        return loss.item(), acc.item()

    def fit(self, progress: bool = True, stop_at: int | None = None) -> None:
        """Train up to cfg.steps (or stop early at step `stop_at`, checkpointing there).

        Ctrl-C lets the current step finish, writes the checkpoint and raises TrainingInterrupted:
        `--resume` then continues exactly as if the run had never stopped.
        """
        with _InterruptAfterStep() as interrupt:
            self._fit(progress, stop_at, interrupt)
        if interrupt.requested:
            raise TrainingInterrupted(self.step, self.checkpoint_path)

    def _fit(self, progress: bool, stop_at: int | None, interrupt: _InterruptAfterStep) -> None:
        from tqdm.auto import tqdm

        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"{cfg.method} C={cfg.channels}",
                   disable=not progress, dynamic_ncols=True)
        self.model.train()
        last_val = next((r["val_accuracy"] for r in reversed(self.rows) if "val_accuracy" in r), float("nan"))
        started = time.perf_counter()
        last = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        while self.step < last and not interrupt.requested:
            self.window.append(self.train_step())
            self.step += 1
            bar.update(1)
            val_now = self.step % cfg.val_every == 0 or self.step == cfg.steps
            log_now = val_now or self.step % max(1, cfg.val_every // 5) == 0
            if log_now:
                loss, acc = (float(v) for v in np.mean(self.window, axis=0))
                self.window = []
                row = {"step": self.step, "episodes": self.step * cfg.episodes_per_step, "loss": loss,
                       "accuracy": acc, "lr": self.scheduler.get_last_lr()[0],
                       "seconds": self.elapsed + time.perf_counter() - started}
                if val_now:
                    val = self.validate()
                    row.update(val_accuracy=val.accuracy, val_ci95=val.ci95)
                    last_val = val.accuracy
                    if val.accuracy > self.best_val:
                        self.best_val = val.accuracy
                        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.rows.append(row)
                self._write_metrics()
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", val=f"{last_val:.3f}")
                if not progress:  # background runs: one line per log point instead of a bar
                    print(f"step {self.step}/{cfg.steps} loss {loss:.3f} acc {acc:.3f} "
                          f"val {last_val:.3f} {row['seconds']:.0f}s", flush=True)
            if val_now:
                self.elapsed += time.perf_counter() - started
                started = time.perf_counter()
                self.save()
        self.elapsed += time.perf_counter() - started
        if self.step < cfg.steps:
            self.save()  # stopped early (stop_at or Ctrl-C): keep the exact state for --resume
        bar.close()

    def test(self, episodes: int | None = None, unlabelled: int | None = None,
             distractors: int | None = None) -> Accuracy:
        """Accuracy of the best-on-validation weights over test episodes (same episodes for all methods).

        `unlabelled` and `distractors` override the training values: the support set at test may
        hold another number of unlabelled samples than in training.
        """
        cfg = self.cfg
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        test_data = load_split(cfg.dataset, "test", cfg.data_dir, split_scheme=cfg.split_scheme)
        sampler = EpisodeSampler(test_data, cfg.ways, cfg.shots, cfg.queries,
                                 cfg.unlabelled if unlabelled is None else unlabelled,
                                 cfg.distractors if distractors is None else distractors,
                                 batch_size=min(cfg.episodes_per_step * 2, 64), seed=EVAL_SEED)
        return evaluate(self.model, sampler, episodes or cfg.test_episodes, self.device)


def train(config: TrainConfig, run_dir: str | os.PathLike | None = None, resume: bool = True,
          progress: bool = True) -> TrainResult:
    """Train (resuming from run_dir/checkpoint.pt when present), test, write result.json.

    With `resume=False` an existing checkpoint in run_dir is an error rather than silently
    overwritten.
    """
    config.resolved()  # bad settings fail before the lock, the data or the model
    checkpoint = Path(run_dir, "checkpoint.pt") if run_dir is not None else None
    if checkpoint is not None and checkpoint.is_file() and not resume:
        raise RunExistsError(f"{checkpoint} exists; pass resume=True (--resume) to continue it, or use another run dir.")
    with run_lock(run_dir):
        trainer = Trainer(config, run_dir)
        resumed = trainer.restore()
        if resumed:
            print(f"resuming from {trainer.checkpoint_path} at step {trainer.step}")
        trainer.fit(progress)
        return _finish(trainer, run_dir)


def _finish(trainer: Trainer, run_dir: str | os.PathLike | None) -> TrainResult:
    """Test the best weights and write the files that describe a finished run."""
    test = trainer.test()
    cfg = trainer.cfg
    counts = count_parameters(trainer.model, cfg.ways)
    result = {
        "method": method_label(cfg),
        "dataset": cfg.dataset, "split_scheme": cfg.split_scheme, "ways": cfg.ways, "shots": cfg.shots,
        "queries": cfg.queries, "unlabelled": cfg.unlabelled, "channels": cfg.channels, "seed": cfg.seed,
        "profile": cfg.profile, "steps": trainer.step, "episodes_seen": trainer.step * cfg.episodes_per_step,
        "test_accuracy": test.accuracy, "ci95": test.ci95, "test_episodes": test.episodes,
        "best_val_accuracy": trainer.best_val, "trainable_params": counts["trainable"],
        "generated_params": counts["generated_per_episode"], "wall_seconds": round(trainer.elapsed, 1),
        "device": str(trainer.device) if trainer.device.type != "cuda" else torch.cuda.get_device_name(trainer.device),
        **{f"{k}_version": v for k, v in _versions().items()},
    }
    if run_dir is not None:
        # The small files that describe a finished run (checkpoint.pt, with the optimizer state,
        # stays out of git): the best weights, the config, the result (last: it marks the run done).
        checkpoints.save(trainer.model.state_dict(), Path(run_dir, "model.pt"))
        write_text_atomic(Path(run_dir, "config.json"), json.dumps(cfg.to_dict(), indent=2))
        write_text_atomic(Path(run_dir, "result.json"), json.dumps(result, indent=2))
    return TrainResult(trainer.model, cfg, pd.DataFrame(trainer.rows), result)


def default_run_dir(config: TrainConfig, group: str | None = None) -> Path:
    """Where a run lives: results/runs/<profile>[-<group>]/<name> (tracked, small files only) for
    the quick and paper profiles, runs/ci[-<group>]/<name> (git-ignored) for smoke runs.

    `group` separates collections with their own budgets (e.g. "sweep") from single runs.
    """
    from htlib.data.paths import PROJECT_ROOT

    cfg = config.resolved()
    name = (f"{method_label(cfg)}-{cfg.dataset}-{cfg.ways}w{cfg.shots}s-u{cfg.unlabelled}"
            f"-c{cfg.channels}-seed{cfg.seed}")
    base = PROJECT_ROOT / ("runs" if cfg.profile == "ci" else "results/runs")
    return base / (cfg.profile if group is None else f"{cfg.profile}-{group}") / name


def load_or_train(config: TrainConfig, run_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> TrainResult:
    """Load a finished run with exactly this configuration if run_dir holds one, else train it
    (resuming an interrupted run). Says which it did."""
    run_dir = Path(run_dir) if run_dir else default_run_dir(config)
    cfg = config.resolved()
    saved = run_dir / "config.json"
    if (run_dir / "result.json").is_file() and (run_dir / "model.pt").is_file() and saved.is_file():
        if not config_differences(json.loads(saved.read_text()), cfg):
            data = load_split(cfg.dataset, "val", cfg.data_dir, split_scheme=cfg.split_scheme)
            model = build_model(cfg, data.image_shape)
            checkpoints.load_weights(model, checkpoints.load(run_dir / "model.pt", "weights"), run_dir / "model.pt")
            result = json.loads((run_dir / "result.json").read_text())
            print(f"Loaded the finished run in {run_dir} (trained {result['steps']} steps in "
                  f"{result['wall_seconds']:.0f} s on {result['device']}); delete it to retrain.")
            return TrainResult(model.to(resolve_device(cfg.device)), cfg,
                               pd.read_csv(run_dir / "metrics.csv"), result)
    print(f"Training into {run_dir} (resumes if interrupted).")
    return train(config, run_dir, resume=True, progress=progress)


def load_trained(path: str | os.PathLike, device: str = "auto",
                 data_dir: str | None = None) -> tuple[nn.Module, TrainConfig]:
    """Rebuild a trained model from a run folder, its model.pt, or a training checkpoint.pt.

    A finished run keeps its best weights in model.pt and its settings in config.json beside it;
    an unfinished one has only checkpoint.pt (best-on-validation weights if recorded).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").is_file() else path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"No weights at {path}: pass a run folder, its model.pt or a checkpoint.pt "
                              f"(train one with `python -m htlib train --run-dir DIR`).")
    state = checkpoints.load(path)
    if isinstance(state, dict) and "config" in state and "model" in state:  # a training checkpoint
        stored, weights = state["config"], state.get("best_state") or state["model"]
    else:  # plain weights: the settings are in config.json beside them
        config_file = path.with_name("config.json")
        if not config_file.is_file():
            raise CheckpointError(f"{path} holds weights only, and no config.json lies beside it to say "
                                  f"which model they belong to. Pass the run folder it came from.")
        stored, weights = json.loads(config_file.read_text()), state
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not isinstance(stored, dict) or not set(stored) <= known:
        raise CheckpointError(f"{path}: its config is not an htlib TrainConfig "
                              f"(unknown fields {sorted(set(stored) - known) if isinstance(stored, dict) else stored}).")
    cfg = TrainConfig(**stored)
    if data_dir is not None:
        cfg.data_dir = data_dir
    data = load_split(cfg.dataset, "val", cfg.data_dir, split_scheme=cfg.split_scheme)
    model = build_model(cfg, data.image_shape)
    checkpoints.load_weights(model, weights, path)
    return model.to(resolve_device(device)), cfg
