"""One training loop for every method: progress bar, validation, checkpoints, exact resume.

The loop receives a `Run` (a resolved config and its folder; see htlib.runs and htlib.config)
and reads neither profiles nor the project's layout.

Every method is an nn.Module mapping (support images, support labels, query images, N) to
query logits, so this loop, the evaluation and the result rows are shared by all of them.

The recipe (optimizer, schedule, clipping, precision) is htlib.optim's; the task (splits and
samplers) htlib.data.task's; the model htlib.methods'.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

import htlib.checkpoints as checkpoints
import htlib.distributed as distributed
import htlib.optim as optim
import htlib.speed as speed
from htlib.config import TrainConfig, checked_config, config_differences  # noqa: F401 (re-exported)
from htlib.data.task import Task
from htlib.errors import CheckpointError, ConfigError, RunExistsError
from htlib.evaluate import EVAL_SEED, Accuracy, episode_logits, evaluate, per_episode_accuracy
from htlib.methods import build_model, upgrade_stored_config
from htlib.models.checks import trusted_episodes
from htlib.runs import Run, is_finished, make_run, relative_to_project, run_lock
from htlib.schemas import read_config, read_result, read_table
from htlib.utils import resolve_device, seed_everything, write_atomic, write_text_atomic


def count_parameters(model: nn.Module, ways: int) -> dict[str, int]:
    if hasattr(model, "parameter_counts"):
        return model.parameter_counts(ways)
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "generated_per_episode": 0}


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


def _versions() -> dict[str, str]:
    import htlib

    return {"htlib": htlib.__version__, "torch": torch.__version__, "python": platform.python_version()}


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    metrics: pd.DataFrame  # one row per logged step (train) or validation
    result: dict  # test accuracy, ci95, steps, wall time, ... (also in run_dir/result.json)


def _checked_model(model: nn.Module, cfg: TrainConfig, task: Task) -> nn.Module:
    """`model` if it has the parameters of the config's method's model (names and shapes)."""
    def shapes(m: nn.Module) -> dict:
        return {name: tuple(p.shape) for name, p in m.state_dict().items()}

    expected = shapes(build_model(cfg, task.image_shape))
    if shapes(model) != expected:
        differ = sorted(set(shapes(model).items()) ^ set(expected.items()))[:4]
        raise ConfigError(f"The model passed is not a {cfg.method} model of this config (C = {cfg.channels}, "
                          f"{cfg.ways}-way): its parameters differ, e.g. {differ}. Build it with "
                          f"htlib.methods.build_model(config, image_shape), or register its method.")
    return model


class Trainer:
    """Holds the state of one run so that it can be checkpointed and resumed exactly."""

    def __init__(self, run: Run | TrainConfig, run_dir: str | os.PathLike | None = None, *,
                 model: nn.Module | None = None, task: Task | None = None) -> None:
        """`run` is a Run, or a TrainConfig trained into `run_dir` (None: nothing is written).

        By default the trainer builds the config's task and model; a notebook or a test may pass
        its own instead: `task` with its splits already loaded (the config's task settings), `model`
        built or changed by hand (the config's method's parameters, by name and shape, so that the
        run's folder, checkpoint and result say what it is)."""
        run = run if isinstance(run, Run) else Run.at(run, run_dir)
        self.cfg = cfg = run.config
        device = resolve_device(cfg.device)
        self.world = distributed.current_world(device)  # one process, or this one of torchrun's
        self.device = self.world.device(device)
        self.run_dir = run.folder
        seed_everything(cfg.seed)
        if task is not None and task != cfg.task:
            raise ConfigError(f"The task passed is not the config's: {task} vs {cfg.task}.")
        self.task = task if task is not None else cfg.task
        # every split must hold the task: checked now, not at the first validation after minutes of training
        self.task.check()
        self.train_data, self.val_data = self.task.split("train"), self.task.split("val")
        speed.tune_backends(self.device)
        self.sampler = self.task.training_sampler(self.world.share(cfg.episodes_per_step), self.world.seed(cfg.seed),
                                                  device=self.device if cfg.episodes_on_device else None)
        self.model = build_model(cfg, self.task.image_shape) if model is None else _checked_model(model, cfg, self.task)
        if run.init_weights is not None:
            checkpoints.load_weights(self.model, checkpoints.load(run.init_weights, "weights"), run.init_weights)
        self.model.to(self.device)
        # the training step calls step_model (the same parameters, maybe wrapped by DDP, maybe compiled);
        # evaluation calls model
        self.step_model = self.model
        if self.world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.step_model = speed.compile_model(self.step_model, self.device)
        optim.warn_if_slow_precision(cfg.precision, self.device)
        self.optimizer = optim.make_optimizer(cfg, self.model.parameters(), self.device)
        self.scheduler = optim.make_scheduler(self.optimizer, cfg)
        self.step = 0
        self.rows: list[dict] = []
        # (loss, accuracy) of the steps since the last log row: tensors on the device until a log
        # point reads them all at once (reading each step would make the host wait for the GPU)
        self.window: list[tuple[torch.Tensor | float, torch.Tensor | float]] = []
        self.best_val = -1.0
        self.best_state: dict | None = None
        self.elapsed = 0.0  # training seconds, summed over resumed sessions

    # ------------------------------------------------------------ checkpoints

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / "checkpoint.pt" if self.run_dir else None

    def save(self) -> None:
        """Write the whole state after a finished step; only tensors and plain data (see checkpoints).
        Every process calls this (it gathers their samplers' states); rank 0 writes."""
        samplers = self.world.gather(self.sampler.generator.get_state())
        window = self._read_window()
        if self.run_dir is None or not self.world.is_main:
            return
        checkpoints.save({
            "config": self.cfg.to_dict(), "step": self.step, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "sampler": samplers[0] if self.world.size == 1 else samplers, "processes": self.world.size,
            "sampler_on": self._sampler_on(), "rows": self.rows, "window": window,
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
        processes = state.get("processes", 1)
        if processes != self.world.size:
            raise CheckpointError(
                f"{path} was written by a run on {processes} process(es); resume it on as many "
                f"(torchrun --nproc_per_node={processes}), since each one continues its own episode stream.")
        saved_on = state.get("sampler_on", "host")  # checkpoints before the device sampler: host
        if saved_on != self._sampler_on():
            raise CheckpointError(
                f"{path} was written with episodes sampled on the {saved_on}, this run samples them on the "
                f"{self._sampler_on()}; a run resumes with the sampler it started with (set episodes_on_device "
                f"and the device accordingly), or use another run directory.")
        checkpoints.load_weights(self.model, state["model"], path)
        optim.load_optimizer_state(self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.generator.set_state(state["sampler"][self.world.rank] if self.world.size > 1 else state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.rows, self.window = state["step"], state["rows"], state.get("window", [])
        self.best_val, self.best_state, self.elapsed = state["best_val"], state["best_state"], state["elapsed"]
        return True

    def _sampler_on(self) -> str:
        """Where the training episodes are drawn, which decides the kind of its random state."""
        return self.device.type if self.cfg.episodes_on_device else "host"

    def _read_window(self) -> list[tuple[float, float]]:
        """The window as numbers, averaged over the processes: one wait for the device (and one
        exchange between processes), at a log point or a save."""
        fresh = [i for i, (loss, _) in enumerate(self.window) if torch.is_tensor(loss)]  # not yet read
        numbers = [tuple(pair) for pair in self.window]
        if fresh or self.world.size > 1:  # every process must take part in the exchange
            stacked = torch.stack([torch.stack(self.window[i]) for i in fresh]) if fresh else torch.zeros(
                0, 2, device=self.device)
            for i, pair in zip(fresh, self.world.mean(stacked).tolist()):
                numbers[i] = tuple(pair)
        return [(float(loss), float(acc)) for loss, acc in numbers]

    def _write_metrics(self) -> None:
        if self.run_dir is None or not self.rows or not self.world.is_main:
            return
        rows = pd.DataFrame(self.rows)
        write_atomic(self.run_dir / "metrics.csv", lambda tmp: rows.to_csv(tmp, index=False))

    # ------------------------------------------------------------ the loop

    def validate(self) -> Accuracy:
        cfg = self.cfg
        sampler = self.task.eval_sampler("val", min(cfg.val_episodes, 32), seed=EVAL_SEED + 1)
        return evaluate(self.model, sampler, cfg.val_episodes, self.device)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns its loss and query accuracy as tensors on the device
        (nothing here reads a value back, so the host never waits for the GPU)."""
        episode = self.sampler.sample().to(self.device)  # a no-op for episodes sampled on the device
        with optim.autocast(self.cfg.precision, self.device):
            logits = episode_logits(self.step_model, episode)  # (B, N*Q, N)
        loss = F.cross_entropy(logits.float().flatten(0, 1), episode.query_labels.flatten(),
                               label_smoothing=self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optim.clip_gradients(self.model, self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        acc = per_episode_accuracy(logits.detach(), episode.query_labels).mean()
        return loss.detach(), acc

    def _check_window(self) -> list[tuple[float, float]]:
        """The window's numbers; a loss that is not finite rolls the run back to its last checkpoint
        (never overwritten by a bad state: saves follow this check) and stops it with advice."""
        values = self._read_window()
        bad = next((i for i, (loss, _) in enumerate(values) if not math.isfinite(loss)), None)
        if bad is None:
            return values
        at = self.step - len(values) + bad + 1
        kept = self.checkpoint_path if self.checkpoint_path and self.checkpoint_path.is_file() else None
        if kept:
            self.restore()
        where = f"rolled back to its last checkpoint (step {self.step}, {kept})" if kept else "not kept (no checkpoint)"
        raise FloatingPointError(
            f"The training loss became {values[bad][0]} at step {at}. Lower the learning rate (now {self.cfg.lr}) "
            f"or the gradient clip ({self.cfg.grad_clip}); the run is {where}.")

    def fit(self, progress: bool = True, stop_at: int | None = None, deadline: float | None = None,
            save_every: float | None = None) -> None:
        """Train up to cfg.steps (or stop early at step `stop_at`, checkpointing there).

        Ctrl-C lets the current step finish, writes the checkpoint and raises TrainingInterrupted:
        `--resume` then continues exactly as if the run had never stopped. `deadline` (a
        time.monotonic() value) stops the same way, without raising: the long runs of a campaign
        end where a session must. `save_every` (seconds) writes the checkpoint that often as well,
        so that a killed process loses at most that much work.
        """
        with _InterruptAfterStep() as interrupt, trusted_episodes():
            interrupted = self._fit(progress, stop_at, interrupt, deadline, save_every)
        if interrupted:
            raise TrainingInterrupted(self.step, self.checkpoint_path)

    def _fit(self, progress: bool, stop_at: int | None, interrupt: _InterruptAfterStep,
             deadline: float | None = None, save_every: float | None = None) -> bool:
        """The loop of `fit`; True if Ctrl-C stopped it. Several processes agree on stopping at a
        log point (each step of theirs must be the same step)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        progress = progress and self.world.is_main
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"{cfg.method} C={cfg.channels}",
                   disable=not progress, dynamic_ncols=True)
        self.model.train()
        last_val = next((r["val_accuracy"] for r in reversed(self.rows) if "val_accuracy" in r), float("nan"))
        started = time.perf_counter()
        last = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        stop = interrupted = False
        saved = time.monotonic()
        while self.step < last and not stop:
            self.window.append(self.train_step())
            self.step += 1
            bar.update(1)
            val_now = self.step % cfg.val_every == 0 or self.step == cfg.steps
            log_now = val_now or self.step % max(1, cfg.val_every // 5) == 0
            if log_now:
                loss, acc = (float(v) for v in np.mean(self._check_window(), axis=0))
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
                if not progress and self.world.is_main:  # background runs: one line per log point, not a bar
                    print(f"step {self.step}/{cfg.steps} loss {loss:.3f} acc {acc:.3f} "
                          f"val {last_val:.3f} {row['seconds']:.0f}s", flush=True)
            # time-based saves in one process only: several would have to agree on the step
            if val_now or (save_every is not None and self.world.size == 1 and time.monotonic() - saved >= save_every):
                self.elapsed += time.perf_counter() - started
                started = time.perf_counter()
                self.save()
                saved = time.monotonic()
            late = deadline is not None and time.monotonic() >= deadline
            interrupted, late = (interrupt.requested, late) if self.world.size == 1 else (
                log_now and self.world.any(interrupt.requested, self.device), log_now and self.world.any(late, self.device))
            stop = interrupted or late
        self.elapsed += time.perf_counter() - started
        if self.step < cfg.steps:
            self.window = self._check_window()  # never save a state that went bad since the last log point
            self.save()  # stopped early (stop_at or Ctrl-C): keep the exact state for --resume
        bar.close()
        return interrupted

    def test(self, episodes: int | None = None, unlabelled: int | None = None,
             distractors: int | None = None, shots: int | None = None) -> Accuracy:
        """Accuracy of the best-on-validation weights over test episodes (same episodes for all methods).

        `unlabelled`, `distractors` and `shots` override the training values: the support set at
        test may hold another number of unlabelled samples, or of labelled ones, than in training.
        """
        cfg = self.cfg
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        changes = {name: value for name, value in
                   [("shots", shots), ("unlabelled", unlabelled), ("distractors", distractors)] if value is not None}
        sampler = self.task.eval_sampler("test", cfg.test_batch_size or min(cfg.episodes_per_step * 2, 64),
                                         seed=EVAL_SEED, **changes)
        return evaluate(self.model, sampler, episodes or cfg.test_episodes, self.device)


# A folder with a trained run's weights or result but without its checkpoint (a committed run: the
# checkpoint stays out of git) cannot be resumed, and training there would replace the run.
TRAINED_MARKS = ("result.json", "model.pt")
RUN_FILES = (*TRAINED_MARKS, "metrics.csv", "config.json")  # what --overwrite deletes first


def train(run: Run | TrainConfig, run_dir: str | os.PathLike | None = None, resume: bool = True,
          progress: bool = True, overwrite: bool = False) -> TrainResult:
    """Train (resuming from the run folder's checkpoint.pt when present), test, write result.json.

    `run` is a Run, or a TrainConfig trained into `run_dir` (None: nothing is written). With
    `resume=False` an existing checkpoint is an error rather than silently overwritten. A folder
    that holds a trained run without its checkpoint (e.g. a committed one) is refused unless
    `overwrite`, which deletes that run's files first.
    """
    run = run if isinstance(run, Run) else Run.at(run, run_dir)  # bad settings fail here, before any work
    checkpoint = run.folder / "checkpoint.pt" if run.folder is not None else None
    if checkpoint is not None and checkpoint.is_file() and not resume:
        raise RunExistsError(f"{checkpoint} exists; pass resume=True (--resume) to continue it, or use another run dir.")
    trained = [name for name in TRAINED_MARKS if checkpoint is not None and (run.folder / name).is_file()]
    if trained and not checkpoint.is_file():
        if not overwrite:
            raise RunExistsError(
                f"{run.folder} holds a trained run ({', '.join(trained)}) without the checkpoint to resume it; "
                f"training there would replace it. Train into another run dir, or pass overwrite=True "
                f"(--overwrite) to replace it on purpose.")
        for name in RUN_FILES:
            (run.folder / name).unlink(missing_ok=True)  # torchrun: another process may be first
    with run_lock(run.folder if distributed.launched_rank() == 0 else None):  # torchrun: rank 0 writes
        trainer = Trainer(run)
        if trainer.restore() and trainer.world.is_main:
            print(f"resuming from {trainer.checkpoint_path} at step {trainer.step}")
        trainer.fit(progress)
        return _finish(trainer)


def _finish(trainer: Trainer) -> TrainResult:
    """Test the best weights and write the files that describe a finished run."""
    test = trainer.test()
    cfg = trainer.cfg
    counts = count_parameters(trainer.model, cfg.ways)
    result = {
        "method": cfg.method,
        "dataset": cfg.dataset, "split_scheme": cfg.split_scheme, "ways": cfg.ways, "shots": cfg.shots,
        "queries": cfg.queries, "unlabelled": cfg.unlabelled, "channels": cfg.channels, "seed": cfg.seed,
        "profile": cfg.profile, "steps": trainer.step, "episodes_seen": trainer.step * cfg.episodes_per_step,
        "test_accuracy": test.accuracy, "ci95": test.ci95, "test_episodes": test.episodes,
        "best_val_accuracy": trainer.best_val, "trainable_params": counts["trainable"],
        "generated_params": counts["generated_per_episode"], "wall_seconds": round(trainer.elapsed, 1),
        "device": str(trainer.device) if trainer.device.type != "cuda" else torch.cuda.get_device_name(trainer.device),
        **{f"{k}_version": v for k, v in _versions().items()},
    }
    if trainer.world.size > 1:
        result["processes"] = trainer.world.size
    run_dir = trainer.run_dir
    if run_dir is not None and trainer.world.is_main:
        # The small files that describe a finished run (checkpoint.pt, with the optimizer state,
        # stays out of git): the best weights, the config, the result (last: it marks the run done).
        checkpoints.save(trainer.model.state_dict(), Path(run_dir, "model.pt"))
        write_text_atomic(Path(run_dir, "config.json"), json.dumps(cfg.to_dict(), indent=2))
        write_text_atomic(Path(run_dir, "result.json"), json.dumps(result, indent=2))
    return TrainResult(trainer.model, cfg, pd.DataFrame(trainer.rows), result)


def load_or_train(run: Run | TrainConfig, run_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> TrainResult:
    """Load a finished run with exactly this configuration if its folder holds one, else train it
    (resuming an interrupted run). Says which it did. A TrainConfig goes to `run_dir`, or by default
    to its place in the project (htlib.runs)."""
    if not isinstance(run, Run):
        run = Run.at(run, run_dir) if run_dir is not None else make_run(run)
    folder, cfg = run.folder, run.config
    if is_finished(run):
        model = build_model(cfg, cfg.task.image_shape)
        checkpoints.load_weights(model, checkpoints.load(folder / "model.pt", "weights"), folder / "model.pt")
        result = read_result(folder / "result.json")
        print(f"Loaded the finished run in {relative_to_project(folder)} (trained {result['steps']} steps in "
              f"{result['wall_seconds']:.0f} s on {result['device']}); delete it to retrain.")
        return TrainResult(model.to(resolve_device(cfg.device)), cfg, read_table(folder / "metrics.csv", "metrics"), result)
    print(f"Training into {relative_to_project(folder)} (resumes if interrupted).")
    return train(run, progress=progress)


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
        stored, weights = upgrade_stored_config(state["config"]), state.get("best_state") or state["model"]
    else:  # plain weights: the settings are in config.json beside them
        config_file = path.with_name("config.json")
        if not config_file.is_file():
            raise CheckpointError(f"{path} holds weights only, and no config.json lies beside it to say "
                                  f"which model they belong to. Pass the run folder it came from.")
        stored, weights = read_config(config_file), state
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not isinstance(stored, dict) or not set(stored) <= known:
        raise CheckpointError(f"{path}: its config is not an htlib TrainConfig "
                              f"(unknown fields {sorted(set(stored) - known) if isinstance(stored, dict) else stored}).")
    cfg = TrainConfig(**stored)
    if data_dir is not None:
        cfg.data_dir = data_dir
    model = build_model(cfg, cfg.task.image_shape)
    checkpoints.load_weights(model, weights, path)
    return model.to(resolve_device(device)), cfg
