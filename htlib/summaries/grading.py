"""The grader timed on a made-up class (`python -m htlib.course time-class`): how long a class
takes, per kind of submission, and what the per-cell limit costs."""

from __future__ import annotations

import pandas as pd

from htlib.summaries.text import count, md_table, one, wrap


def grading_section(tables: dict[str, pd.DataFrame]) -> str:
    """One paragraph and one table per file (name -> its rows): the whole class's wall time, then
    per kind of submission the students, seconds per student (median and slowest) and points."""
    if not tables:
        return wrap("No class timed yet: `python -m htlib.course time-class --students 30 --out "
                    "results/grading_class_cpu.csv` grades a made-up class and writes one.")
    parts = []
    for name, t in tables.items():
        students = one(t.students, "class size")
        per_student = t.groupby("student").agg(seconds=("seconds", "sum"), kind=("kind", "first"),
                                               points=("points", "first"), max_points=("max_points", "first"))
        wall = one(t.wall_seconds, "wall time")
        parts.append(wrap(
            f"`results/{name}`: `python -m htlib.course time-class` on {one(t.cpu, 'CPU model')}, "
            f"{count(one(t.threads, 'thread count'), 'thread')}, {one(t.date, 'date')}: a made-up class of "
            f"{students} students (htlib.course.sample_class), graded at `ci` with a limit of "
            f"{one(t.timeout, 'time limit'):g} s per cell, took {wall / 60:.0f} minutes in all "
            f"({wall / students:.0f} s per student on average, the second check outside the kernel included). "
            f"Seconds per student are the sum of its notebooks' execution times."))
        rows = []
        for kind, g in per_student.groupby("kind", sort=False):
            rows.append([f"`{kind}`", str(len(g)), f"{g.seconds.median():.0f}", f"{g.seconds.max():.0f}",
                         f"{g.points.median():g} of {one(g.max_points, 'points of the class'):g}"])
        parts.append("\n".join(md_table(["submission", "students", "seconds per student (median)", "slowest",
                                           "points (median)"], rows)))
    return "\n\n".join(parts)
