"""Small helpers shared by every module: seeding, device choice, atomic file writes."""

from __future__ import annotations

import errno
import glob
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from htlib.errors import ConfigError, StorageError, UserError

DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that the same seed gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map "auto" to "cuda" when a GPU is usable, else "cpu"; check any other name.

    An unknown name, or a GPU asked for where torch sees none, is a ConfigError that says what
    would work. CUDA is only queried when this is called, never at import time.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = str(device).split(":")[0]
    if kind not in DEVICE_KINDS:
        raise ConfigError(f"Unknown device {device!r}; use one of {DEVICE_KINDS} (e.g. 'cuda:0').")
    try:
        out = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"Bad device {device!r} ({exc}); use 'auto', 'cpu' or 'cuda[:N]'.") from None
    if out.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for a GPU, but this torch ({torch.__version__}) sees none; "
            f"use 'auto' or 'cpu'.")
    if out.type == "cuda" and out.index is not None and out.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) are visible.")
    if out.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: Apple's MPS backend is not available here; use 'auto' or 'cpu'.")
    return out


# What a full, read-only or foreign file system says; reported in one line instead of a traceback.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it onto `path`.

    Readers see the old file or the new one, never half of one: a crash mid-write leaves the
    last good file in place. The temporary name is unique (it holds the writer's process id), so
    two writers never share one, and the next write removes those of writers that died (SIGKILL).
    A full or read-only disk is a StorageError that names the path; the old file stays.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise storage_error(exc, path) from exc
    os.chmod(tmp, 0o644)  # mkstemp makes it private; results are meant to be shared
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if not isinstance(exc, UserError) and _disk_cause(exc) is not None:
            raise storage_error(_disk_cause(exc), path) from exc
        raise


def _disk_cause(exc: BaseException | None) -> OSError | None:
    """The full or read-only disk behind an error, also when another error was raised while handling
    it (torch.save's zip writer raises a RuntimeError on top of the OSError)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def storage_error(exc: OSError, path: Path) -> OSError:
    """The StorageError that names `path` for a full or read-only disk; any other error unchanged."""
    if exc.errno not in STORAGE_ERRNOS:
        return exc
    kept = " (its previous version is kept)" if path.is_file() else ""
    return StorageError(exc.errno, f"cannot write {path}: {os.strerror(exc.errno)}{kept}; free space or "
                                   f"choose a writable folder, then run the command again")


def _remove_orphans(path: Path) -> None:
    """Delete the temporary files of `path` left by writers that no longer run."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


# A number a notebook computes live (a model's output, a loss, a gradient norm) differs in its last
# digits between CPUs and GPUs. It is shown after LIVE_MARK, which tests/nbval_sanitize.cfg masks,
# and the cell asserts what it must satisfy instead. Numbers read from results/ stay unmarked and
# are compared exactly.
LIVE_MARK = "≈"


def live(value: float, spec: str = ".3f") -> str:
    """`value` formatted by `spec`, marked as computed live: live(0.7104) == '≈0.710'."""
    return f"{LIVE_MARK}{format(float(value), spec)}"


def live_columns(frame, columns, spec: str = ".3f"):
    """A copy of the DataFrame `frame` with `columns` shown as live values (strings)."""
    return frame.assign(**{c: frame[c].map(lambda v: live(v, spec)) for c in columns})
