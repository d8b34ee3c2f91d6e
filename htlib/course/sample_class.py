"""A made-up class of submissions: to try the grader on, and to time it at the size of a class.

    python -m htlib.course time-class --students 30 --out results/grading_class_cpu.csv

Each student is one of a few kinds of submission (KINDS), in a fixed mix (CLASS_MIX) that has
mostly complete and partial work, some untouched notebooks and one endless loop in ten: the loop
is what the per-cell time limit is for, and what it costs shows in the timings.
"""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path

import nbformat
import pandas as pd
import torch

from htlib.course.release import STUDENT_DIR, check_cell_id, nbgrader_meta, teacher_notebooks

KINDS = {
    "complete": "every exercise answered (the teacher's notebooks)",
    "partial": "notebooks 01, 03 and 04 only: two answers right, two with a typical mistake, one left as the "
               "stub, a check cell tampered with",
    "untouched": "the student versions handed back as they were",
    "endless-loop": "complete, with a cell in notebook 01 that loops forever (interrupted at the per-cell limit)",
}
CLASS_MIX = ("complete", "partial", "complete", "partial", "untouched",
             "complete", "partial", "complete", "partial", "endless-loop")

# The partial submission: per exercise, the source of its solution cell (None: the teacher's answer;
# "stub": left as handed out) and the points it must get (tests/test_course_grading.py holds the grader to them).
PLANTED = {
    "choose_classes": (None, 2),
    "split_episode": ('''
def split_episode(picked, shots):
    n, m = picked.shape[:2]
    return (picked[:, :shots].reshape(n * shots, *picked.shape[2:]), torch.arange(n).repeat(shots),
            picked[:, shots:].reshape(n * (m - shots), *picked.shape[2:]), torch.arange(n).repeat(m - shots))
''', 0),
    "weights_written": (None, 2),
    "gap_ci": ("stub", 0),
    "label_embeddings": ('''
def label_embeddings(embedding, labels):
    return embedding(labels)
''', 0),
    "soft_kmeans_step": (None, 3),
}
PLANTED_NOTEBOOKS = ("01", "03", "04")
ENDLESS_LOOP = "while True:  # waiting for something that never happens\n    pass"


def plant_partial(folder: Path) -> None:
    """Write the partial submission (PLANTED) into `folder`."""
    teachers = teacher_notebooks()
    for prefix in PLANTED_NOTEBOOKS:
        nb = nbformat.read(STUDENT_DIR / teachers[prefix].name, as_version=4)
        answers = {nbgrader_meta(c).get("grade_id"): c for c in nbformat.read(teachers[prefix], as_version=4).cells}
        for cell in nb.cells:
            key = nbgrader_meta(cell).get("grade_id")
            if key in PLANTED and PLANTED[key][0] != "stub":
                cell.source = PLANTED[key][0] or answers[key].source
            if key == check_cell_id("gap_ci"):  # tampering with a check: the grader runs the released one
                cell.source = "2.0"
        nbformat.write(nb, str(folder / teachers[prefix].name))


def write_submission(folder: Path, kind: str) -> None:
    """One student's folder of the given kind (a key of KINDS)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of submission {kind!r}; the kinds are {list(KINDS)}")
    folder.mkdir(parents=True)
    teachers = teacher_notebooks()
    if kind == "partial":
        return plant_partial(folder)
    for prefix, path in teachers.items():
        source = STUDENT_DIR / path.name if kind == "untouched" else path
        nb = nbformat.read(source, as_version=4)
        if kind == "endless-loop" and prefix == "01":
            first_answer = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("solution"))
            nb.cells.insert(first_answer, nbformat.v4.new_code_cell(ENDLESS_LOOP))
        nbformat.write(nb, str(folder / path.name))


def build_class(folder: Path, students: int) -> dict[str, str]:
    """`students` submission folders in `folder` (student_01 ...), their kinds in CLASS_MIX's order;
    returns student -> kind."""
    kinds = {f"student_{i + 1:02d}": CLASS_MIX[i % len(CLASS_MIX)] for i in range(students)}
    for student, kind in kinds.items():
        write_submission(Path(folder) / student, kind)
    return kinds


def time_class(students: int, timeout: float, out_csv: Path | None = None, data_dir: str | None = None,
               only: list[str] | None = None, log=print) -> pd.DataFrame:
    """Build a class of `students`, grade it (`only`: those notebooks) at `ci` with `timeout` seconds
    per cell, and return
    (and write to `out_csv`) one row per student and notebook: its kind, the seconds it took, how
    it ran, the student's points; with the machine, the limit and the whole run's wall time."""
    from htlib.course.grade import grade_folder, summary
    from htlib.cpu import capability, cpu_model

    with tempfile.TemporaryDirectory(prefix="htlib-class-") as work:
        kinds = build_class(Path(work) / "submissions", students)
        started = time.perf_counter()
        table = grade_folder(Path(work) / "submissions", Path(work) / "graded", profile="ci", timeout=timeout,
                             data_dir=data_dir, only=only, log=log)
        wall = time.perf_counter() - started
        timings = pd.read_csv(Path(work) / "graded" / "timings.csv", dtype={"student": str, "notebook": str})
    points = summary(table).set_index("student")
    out = timings.assign(
        kind=timings.student.map(kinds), points=timings.student.map(points.points),
        max_points=timings.student.map(points.max_points), students=students, timeout=timeout,
        wall_seconds=round(wall, 1), cpu=cpu_model(), capability=capability(), threads=torch.get_num_threads(),
        torch=torch.__version__, date=date.today().isoformat())
    if out_csv is not None:
        out.to_csv(out_csv, index=False)
    return out
