"""Coursework: graded exercises in notebooks 01-06, their checks, student versions and a grader.

In a notebook::

    from htlib import course
    result = course.check("split_episode", split_episode)   # says what is right or wrong, with a hint
    split_episode = result.use                              # yours once it passes, else the reference
    result                                                  # the cell's value: its points, for nbgrader

`python -m htlib.course student` writes the student versions (nbgrader's format and preprocessors,
the `course` extra), `python -m htlib.course grade FOLDER` grades a folder of submissions.
The checks themselves need only htlib.
"""

from htlib.course.answers import check
from htlib.course.core import MIME, CheckFailed, Exercise, Result
from htlib.course.exercises import EXERCISES, NOTEBOOKS, exercises_of

__all__ = ["EXERCISES", "MIME", "NOTEBOOKS", "CheckFailed", "Exercise", "Result", "check", "exercises_of"]
