"""Checking a student's answer: the function a notebook's check cell calls (`course.check`).

It lives apart from the exercises' table (htlib.course.exercises) and the types both use
(htlib.course.core), so that neither of those imports the other back.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable

import torch

from htlib.course.core import CheckFailed, Exercise, NotDone, Result
from htlib.course.exercises import EXERCISES


def check(exercise: Exercise | str, answer: Callable) -> Result:
    """Run `answer` through the exercise's check; never raises for a wrong or unfinished answer.

    The global random state is restored afterwards, so that checking an answer (right, wrong or
    unfinished) never changes the numbers that the rest of the notebook shows.
    """
    ex = EXERCISES[exercise] if isinstance(exercise, str) else exercise
    if not callable(answer):
        return Result(ex, "wrong", f"`{ex.key}` should be a function, got {type(answer).__name__}.",
                      f"define it with `def {ex.key}(...):` in the cell above", answer)
    if answer is ex.reference:  # the check cell rebinds the name to the reference while an answer fails
        return Result(ex, "wrong", f"This `{ex.key}` is htlib's reference, not yours: after a failed check the "
                      f"notebook uses the reference under your function's name.",
                      f"run the cell that defines your `{ex.key}` again, then this check", answer)
    printed = io.StringIO()  # what the answer prints while checked: hidden (nbgrader scores stderr as 0)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings(), \
            contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        warnings.simplefilter("ignore")
        try:
            verified = ex.check(answer)
            result = Result(ex, "passed", f"Passed: {verified}", "", answer)
        except NotDone:
            result = Result(ex, "not done yet", "Not done yet: the function still raises NotImplementedError.",
                            "replace `raise NotImplementedError()` with your code, then run this cell again", answer)
        except CheckFailed as failed:
            result = Result(ex, "wrong", failed.message, failed.hint, answer)
    if printed.getvalue():
        result.message += (f" (Your function printed {len(printed.getvalue().splitlines())} line(s) while it was "
                           f"checked; the check hides them: print on your own example instead.)")
    return result
