"""Where runs live: one rule for a run's folder and for the result tables, and the run itself.

A `Run` is a resolved config and its folder, made once (`make_run` for the project's own place,
`Run.at` for a folder of your choice) and handed to the training loop, which then reads neither
profiles nor the project's layout. Everything that writes results goes through this module, so
`RESULTS_ROOT` is the one name a test points elsewhere.

Layout: ``results/runs/<profile>[-<group>]/<name>/`` for real runs (small files tracked in git),
``runs/ci[-<group>]/<name>/`` for smoke runs (git-ignored; `HTLIB_SCRATCH` moves this folder, as
the grader does to give each submission its own); tables ``results/<kind>_<profile>_<dataset>.csv``
(the smoke runs' folder again at ``ci``). `group` separates collections with their own budgets (a sweep's cells,
the semi-supervised arms) from the single runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from htlib.config import TrainConfig, config_differences
from htlib.data.paths import PROJECT_ROOT
from htlib.errors import CheckpointError, ConfigError, RunLockedError
from htlib.methods import get_method
from htlib.schemas import read_config
from htlib.utils import storage_error

RESULTS_ROOT = PROJECT_ROOT
SCRATCH_ENV = "HTLIB_SCRATCH"  # the folder of smoke runs (profile ci) and their tables, if not runs/


def scratch_root() -> Path:
    """Where smoke runs go: HTLIB_SCRATCH, else the project's runs/ folder."""
    return Path(os.environ[SCRATCH_ENV]) if os.environ.get(SCRATCH_ENV) else RESULTS_ROOT / "runs"


@dataclass(frozen=True)
class Run:
    config: TrainConfig  # resolved: every profile default filled in and checked
    folder: Path | None  # None: train without writing anything

    @classmethod
    def at(cls, config: TrainConfig, folder: str | os.PathLike | None) -> "Run":
        """A run of `config` in a folder of the caller's choosing (None: nothing is written)."""
        return cls(config.resolved(), Path(folder) if folder is not None else None)

    @property
    def init_weights(self) -> Path | None:
        """The weights file `init_from` names, relative paths taken from the project root."""
        return project_path(self.config.init_from) if self.config.init_from else None


def is_finished(run: Run) -> bool:
    """Whether the run's folder holds a finished run; one trained with other settings is an error,
    never silently reused or trained over (it may be a committed result)."""
    saved = run.folder / "config.json"
    if not (run.folder / "result.json").is_file() or not saved.is_file():
        return False
    differ = config_differences(read_config(saved), run.config)
    if differ:
        raise ConfigError(
            f"{run.folder} holds a finished run with other settings {differ} (as (stored, wanted)); a "
            f"profile's budget may have changed. Delete that folder to retrain it, or use another folder.")
    return True


def make_run(config: TrainConfig, group: str | None = None) -> Run:
    """The run of `config` in its place in the project (see the module docstring)."""
    cfg = config.resolved()
    return Run(cfg, run_folder(cfg, group))


# Training-recipe settings named in a run's folder when not at their default (the recipe study's
# arms change them one at a time); every run made before they existed has them all at default.
RECIPE_FIELDS = ("optimizer", "schedule", "lr", "weight_decay", "label_smoothing", "augment_shift", "precision")
# Task settings named likewise: runs on another split or protocol (htlib.data.protocols) never share
# a folder with the default's.
TASK_FIELDS = ("split_scheme", "independent_queries")
MAX_EXTRA = 160  # characters of settings spelled out in a folder name; longer lists become a hash


def run_name(cfg: TrainConfig) -> str:
    """e.g. ht-all-omniglot-20w1s-u0-c8-seed0; model options beyond the method's own are appended
    (…-seed0-transformer_layers=1), then recipe settings off their default (…-lr=0.003), so that
    a variant never lands in the folder of the default."""
    name = cfg.method
    own = get_method(name).options
    extra = "".join(f"-{k}={v}" for k, v in sorted(cfg.model_options.items()) if own.get(k, object()) != v)
    default = TrainConfig()
    extra += "".join(f"-{k}={getattr(cfg, k)}" for k in TASK_FIELDS + RECIPE_FIELDS
                     if getattr(cfg, k) != getattr(default, k))
    if len(extra) > MAX_EXTRA:  # a folder name must stay under the file system's 255 bytes
        extra = f"-settings{hashlib.sha256(extra.encode()).hexdigest()[:12]}"  # config.json inside says which
    return f"{name}-{cfg.dataset}-{cfg.ways}w{cfg.shots}s-u{cfg.unlabelled}-c{cfg.channels}-seed{cfg.seed}{extra}"


def run_folder(cfg: TrainConfig, group: str | None = None) -> Path:
    """The folder of a resolved config's run (the one rule; see the module docstring)."""
    collection = cfg.profile if group is None else f"{cfg.profile}-{group}"
    runs = scratch_root() if cfg.profile == "ci" else RESULTS_ROOT / "results" / "runs"
    return runs / collection / run_name(cfg)


def table_path(kind: str, profile: str, dataset: str) -> Path:
    """The tidy table of an experiment, e.g. table_path("sweep", "quick", "omniglot")."""
    return (scratch_root() if profile == "ci" else RESULTS_ROOT / "results") / f"{kind}_{profile}_{dataset}.csv"


def project_path(path: str | os.PathLike) -> Path:
    """A path stored relative to the project (so configs stay portable), made absolute; must exist."""
    full = Path(path) if Path(path).is_absolute() else RESULTS_ROOT / path
    if not full.is_file():
        raise CheckpointError(f"init_from: no weights at {full}; train that run first or fix the path.")
    return full


def relative_to_project(path: Path) -> str:
    """Paths inside the project are stored relative to it, so that configs stay portable."""
    try:
        return str(Path(path).relative_to(RESULTS_ROOT))
    except ValueError:
        return str(path)


def make_folder(folder: str | os.PathLike) -> Path:
    """Create a run folder, or say in one line why it cannot be one: a file in its place, a link
    whose target is gone, a folder that is not ours or a read-only or full disk."""
    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        raise ConfigError(f"{folder} is a link to {os.readlink(folder)}, which does not exist; create that "
                          f"folder or remove the link, or choose another run folder.")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a folder; choose another run folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{folder}: a part of this path is a file, not a folder; choose another run folder."
                          ) from None
    except OSError as exc:
        raise storage_error(exc, folder) from exc
    return folder


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike | None):
    """Hold FOLDER/.lock while training: a second process that wants the same folder is refused
    at once, before it reads any data. The lock is the operating system's (released when the
    process dies), so a crash never leaves a stale lock behind."""
    if folder is None:
        yield
        return
    from filelock import FileLock, Timeout

    make_folder(folder)
    lock = FileLock(Path(folder, ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:  # first: filelock's Timeout is an OSError too
        raise RunLockedError(
            f"Another process is training into {folder} (it holds {Path(folder, '.lock')}). "
            f"Wait for it to finish, or use another run folder.") from None
    except OSError as exc:  # the folder exists but cannot hold a file (read-only, not ours, full)
        raise storage_error(exc, Path(folder, ".lock")) from exc
    try:
        yield
    finally:
        lock.release()
