"""Reading and writing weights and checkpoints safely.

A `.pt` file is data, never code: every load uses `torch.load(weights_only=True)`, which only
rebuilds tensors and plain containers (dicts, lists, numbers, strings) and refuses any other
Python object, so a crafted file cannot run anything. Everything htlib saves is of that kind
(configs as dicts, metrics as floats). Writes go through a temporary file and an atomic rename.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import nn

from htlib.errors import CheckpointError
from htlib.utils import write_atomic


def save(obj, path: str | os.PathLike) -> None:
    """torch.save, atomically: a crash mid-write never replaces the last good file. Through a
    Python file, so that a full disk is an OSError with its errno (write_atomic names it), not
    torch's own RuntimeError."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as file:
            torch.save(obj, file)

    write_atomic(path, write)


def load(path: str | os.PathLike, what: str = "checkpoint"):
    """torch.load a file htlib wrote, onto the CPU, refusing anything but tensors and plain data.

    A missing, truncated or unsafe file is a CheckpointError that names it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No {what} at {path}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch names a refused object on a line like "...unsupported GLOBAL posix.system..."; any
        # other unpickling error means the bytes are no torch file at all
        culprit = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), None)
        if culprit is None:
            raise _unreadable(path, what, "not a torch file") from None
        raise CheckpointError(
            f"Refused to load {path}: it holds Python objects other than tensors and plain data "
            f"({culprit}). htlib never loads such files, because unpickling them can run arbitrary "
            f"code. Use a file written by htlib, from a source you trust.") from None
    except Exception as exc:  # zip/stream errors of a truncated or foreign file
        raise _unreadable(path, what, f"{type(exc).__name__}: {exc}") from None


def _unreadable(path: Path, what: str, reason: str) -> CheckpointError:
    return CheckpointError(
        f"Could not read {what} {path} ({reason}). The file is truncated or not an "
        f"htlib training checkpoint; delete it (and train again) or point at another one.")


def load_weights(model: nn.Module, state: dict, path: str | os.PathLike) -> None:
    """model.load_state_dict(state), with a clear error when the weights belong to another model."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise CheckpointError(
            f"The weights in {path} do not fit this model: it was trained for another method, CNN "
            f"size (channels), number of ways or image shape (dataset). Use the settings it was "
            f"trained with (its config.json). Details: {detail}") from None
