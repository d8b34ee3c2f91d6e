"""The machinery of a graded exercise: run a student's function through its check, explain the verdict.

A check is a function that calls the student's answer on small fixed inputs and raises
`CheckFailed(message, hint)` at the first thing that is wrong, with what is wrong said plainly
(a shape, an invariant, a value off by how much). `check()` turns that into a `Result`, which a
notebook shows as text and which nbgrader's rule scores: a check cell whose last value is a number
gets that many points (`nbgrader.utils.determine_grade`), so `Result`'s plain-text form is its points.

Nothing here imports nbgrader: students need only htlib.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from htlib.errors import UserError

# The grader reads a check's verdict from this output type of the check cell (a vendor type, so
# that Jupyter shows the markdown and ignores it).
MIME = "application/vnd.htlib.check+json"
STATUSES = ("passed", "wrong", "not done yet")


class CourseError(UserError, ValueError):
    """A teacher's mistake the course tools can name: a missing folder, a malformed exercise cell."""


class CheckFailed(Exception):
    """What is wrong with an answer (`message`) and how to find the way (`hint`)."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint


class NotDone(Exception):
    """The answer is still the stub (it raised NotImplementedError)."""


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: the function a student writes in notebook `notebook`, and its check."""

    key: str  # the function's name in the notebook; also the nbgrader grade_id of its cells
    notebook: str  # "01".."05"
    title: str
    points: int
    minutes: int  # our estimate of a student's time for it (written by us, not measured)
    reference: Callable  # the solution; the notebook falls back on it while the answer fails
    check: Callable[[Callable], str]  # raises CheckFailed / NotDone, or returns what it verified
    hint: str  # shown when the answer raises an unexpected error


@dataclass
class Result:
    """The verdict of one check; the last value of a check cell."""

    exercise: Exercise
    status: str  # one of STATUSES
    message: str
    hint: str
    answer: Any

    @property
    def points(self) -> float:
        return float(self.exercise.points) if self.status == "passed" else 0.0

    @property
    def use(self) -> Callable:
        """The function the rest of the notebook calls: the answer once it passes, else the reference,
        so that a notebook with unfinished exercises still runs top to bottom."""
        return self.answer if self.status == "passed" else self.exercise.reference

    def record(self) -> dict:
        return {"exercise": self.exercise.key, "notebook": self.exercise.notebook, "status": self.status,
                "points": self.points, "max_points": float(self.exercise.points), "message": self.message,
                "hint": self.hint}

    def text(self) -> str:
        ex = self.exercise
        head = f"Exercise `{ex.key}` ({ex.title}): {self.points:g} / {ex.points} points, {self.status}."
        lines = [head, self.message]
        if self.hint:
            lines.append(f"Hint: {self.hint}")
        if self.status != "passed":
            lines.append(f"Until it passes, the rest of this notebook uses htlib's reference `{ex.key}`.")
        return "\n\n".join(lines)

    def __repr__(self) -> str:
        # nbgrader scores a check cell by this text: it must be the number of points and nothing else
        return f"{self.points:g}"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": repr(self), "text/markdown": self.text(), MIME: self.record()}


# ---------------------------------------------------------------- helpers for writing checks


def call(answer: Callable, *args, hint: str = "") -> Any:
    """Call the answer; the stub's NotImplementedError means 'not done yet', any other error is
    reported as a fault of the answer (with the exception's own text). An answer that changes a
    tensor it was given fails, whatever it returns: the caller's data must stay as it was."""
    before = [a.clone() if isinstance(a, torch.Tensor) else None for a in args]
    try:
        out = answer(*args)
    except NotImplementedError as e:
        raise NotDone() from e
    except Exception as e:  # the student's code may raise anything: report it, never crash
        raise CheckFailed(f"Calling it raised {type(e).__name__}: {e}", hint) from e
    for i, (arg, kept) in enumerate(zip(args, before)):
        if kept is not None and not torch.equal(arg, kept):
            raise CheckFailed(f"It changed its argument {i + 1} (the tensor of shape {tuple(arg.shape)}) in place: "
                              f"the caller's tensor must stay as it was.",
                              "compute new tensors (x = x - m, torch.cat, clone()) instead of writing into an input "
                              "(x -= m, x[...] = ..., x.copy_)")
    return out


def expect_tensor(value: Any, name: str, shape: tuple[int, ...], integer: bool = False, hint: str = "") -> torch.Tensor:
    """`value` must be a tensor of `shape` (and of an integer dtype when `integer`)."""
    if not isinstance(value, torch.Tensor):
        raise CheckFailed(f"`{name}` should be a torch tensor of shape {shape}, got {type(value).__name__}.", hint)
    if tuple(value.shape) != tuple(shape):
        raise CheckFailed(f"`{name}` has shape {tuple(value.shape)}; it should be {tuple(shape)}.", hint)
    if integer and (value.dtype.is_floating_point or value.dtype == torch.bool):
        raise CheckFailed(f"`{name}` has dtype {value.dtype}; it holds indices, so it should be an integer "
                          f"tensor (torch.long).", hint)
    if not integer and not value.dtype.is_floating_point:
        raise CheckFailed(f"`{name}` has dtype {value.dtype}; it should be a floating-point tensor.", hint)
    return value


def expect_close(got: torch.Tensor, want: torch.Tensor, name: str, hint: str = "", atol: float = 1e-5) -> None:
    """Values must match the reference on the check's fixed inputs; says by how much they do not."""
    diff = (got.detach().float() - want.float()).abs()
    if not bool((diff <= atol + 1e-5 * want.abs()).all()):
        where = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        raise CheckFailed(f"`{name}` has the right shape but the wrong values: it differs from the reference on "
                          f"the check's fixed inputs by up to {float(diff.max()):.4g} (at index {where}); "
                          f"{int((diff > atol).sum())} of {diff.numel()} entries differ.", hint)


def same(a: Any, b: torch.Tensor, atol: float = 1e-5) -> bool:
    """True when `a` is a tensor of b's shape with b's values (used to recognise a typical mistake)."""
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and bool(torch.allclose(a.detach().float(), b.float(), atol=atol)))


def recognise(got: Any, mistakes: list[tuple[torch.Tensor, str, str]]) -> None:
    """Raise the message of the first typical mistake whose output `got` reproduces."""
    for output, message, hint in mistakes:
        if same(got, output):
            raise CheckFailed(message, hint)


def as_number(value: Any, name: str) -> float:
    """A Python number or a 0-d tensor, as a float."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise CheckFailed(f"`{name}` should be a number, got {type(value).__name__}.")


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)
