"""Grade a folder of submissions: one CSV row per student and exercise, and a summary.

Layout: ``FOLDER/<student>/<notebook>.ipynb``, the notebooks named as in notebooks/student/
(``01_episodes.ipynb`` ...). Each submission is executed in a fresh kernel at the given profile
(papermill injects it as it does for every notebook run), with errors allowed so that a broken
cell costs only what depends on it, and with one time limit for the whole notebook. As nbgrader's
autograde does, the check cells are first replaced by the released ones, and each check cell is
scored by nbgrader's rule (`nbgrader.utils.determine_grade`: the cell's value is its points, an
error scores 0). A notebook that is missing, unreadable, raises, runs past its limit or kills its
kernel gets rows that say so; the grader itself goes on to the next.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
import pandas as pd

from htlib.course.core import MIME, CourseError
from htlib.course.exercises import EXERCISES, NOTEBOOKS, exercises_of
from htlib.course.release import (
    STUDENT_DIR,
    check_cell_id,
    nbgrader_meta,
    released_check_cells,
    teacher_notebooks,
)
from htlib.tools.notebooks import NOTEBOOK_DIR

DEFAULT_TIMEOUT = 600  # seconds per notebook: far above what any notebook needs at `ci`
COLUMNS = ["student", "notebook", "exercise", "points", "max_points", "status", "message", "notebook_status"]


@dataclass
class Row:
    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    status: str  # passed | wrong | not done yet | error | not reached | missing | unreadable
    message: str
    notebook_status: str


@dataclass
class Run:
    """What happened when a submission was executed."""

    nb: object  # the executed notebook (outputs of the cells that ran)
    stopped_at: int | None  # index of the cell where execution stopped (time limit, dead kernel), else None
    status: str  # one line for the CSV


def submissions(folder: Path) -> list[Path]:
    """The student folders of `folder`, sorted; a clear error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CourseError(f"no folder {folder}: give a folder holding one folder per student, "
                          f"e.g. {folder}/alice/01_episodes.ipynb")
    students = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise CourseError(f"{folder} holds no student folders: expected {folder}/<student>/01_episodes.ipynb ...")
    return students


def grade_folder(folder: Path, out_dir: Path, profile: str = "ci", timeout: float = DEFAULT_TIMEOUT,
                 dataset: str | None = None, data_dir: str | None = None, only: list[str] | None = None,
                 log=print) -> pd.DataFrame:
    """Grade every student in `folder`; write grades.csv, summary.csv and the executed notebooks to `out_dir`."""
    from htlib.profiles import get_profile

    get_profile(profile)  # a typo fails here, before any notebook runs
    students = submissions(folder)
    books = {p: s for p, s in teacher_notebooks().items() if not only or p in only}
    if not books:
        raise CourseError(f"--only {only} matches none of the notebooks with exercises {NOTEBOOKS}")
    released = released_check_cells()
    params = {"profile": profile, **({"dataset": dataset} if dataset else {}),
              **({"data_dir": str(Path(data_dir).resolve())} if data_dir else {})}
    out_dir = Path(out_dir)
    rows: list[Row] = []
    for student in students:
        for prefix, teacher in books.items():
            path = student / teacher.name
            start = time.perf_counter()
            graded = grade_notebook(student.name, prefix, path, released, params, timeout,
                                    out_dir / "executed" / student.name / teacher.name)
            rows += graded
            got = sum(r.points for r in graded)
            log(f"[grade] {student.name}/{teacher.name}: {got:g} / {sum(r.max_points for r in graded):g} points, "
                f"{graded[0].notebook_status} ({time.perf_counter() - start:.0f} s)")
    table = pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "grades.csv", index=False, quoting=csv.QUOTE_NONNUMERIC)
    summary(table).to_csv(out_dir / "summary.csv", index=False)
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per student: points, maximum, and how many exercises ended in each status."""
    counts = pd.crosstab(table["student"], table["status"])
    totals = table.groupby("student")[["points", "max_points"]].sum()
    out = totals.join(counts).fillna(0).reset_index()
    out["percent"] = (100 * out["points"] / out["max_points"]).round(1)
    return out[["student", "points", "max_points", "percent", *counts.columns]]


def grade_notebook(student: str, prefix: str, path: Path, released: dict[str, str], params: dict,
                   timeout: float, executed_path: Path) -> list[Row]:
    """Rows for the exercises of one notebook of one student."""
    exercises = exercises_of(prefix)

    def rows_all(status: str, message: str, notebook_status: str) -> list[Row]:
        return [Row(student, prefix, ex.key, 0.0, float(ex.points), status, message, notebook_status)
                for ex in exercises]

    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob(f"{prefix}*.ipynb"))  # e.g. a renamed copy
        said = f" (found {', '.join(near)}: rename it {path.name})" if near else ""
        return rows_all("missing", f"no notebook {path.name} in {path.parent.name}/{said}", "missing")
    # papermill's reader: it fills in the metadata that its parameter injection expects
    from papermill.iorw import load_notebook_node

    try:
        nb = load_notebook_node(str(path))
    except Exception as e:  # noqa: BLE001  (truncated or hand-edited JSON: say so, grade the others)
        return rows_all("unreadable", f"{path.name} is not a readable notebook: {type(e).__name__}: {e}",
                        "unreadable")
    for cell in nb.cells:  # a submission's check cells are replaced by the released ones
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in released:
            cell.source = released[grade_id]
    run = execute(nb, params, timeout)
    executed_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(run.nb, str(executed_path))
    index = {nbgrader_meta(c).get("grade_id"): i for i, c in enumerate(run.nb.cells) if nbgrader_meta(c)}
    return [score(student, prefix, EXERCISES[ex.key], run, index.get(check_cell_id(ex.key))) for ex in exercises]


def score(student: str, prefix: str, ex, run: Run, at: int | None) -> Row:
    """The row of one exercise, from its executed check cell (nbgrader's rule for the points)."""
    from nbgrader.utils import determine_grade

    def row(points, status, message):
        return Row(student, prefix, ex.key, float(points), float(ex.points), status, message, run.status)

    if at is None:
        return row(0, "error", f"the check cell {check_cell_id(ex.key)!r} was deleted from the notebook")
    cell = run.nb.cells[at]
    if run.stopped_at is not None and at >= run.stopped_at:
        return row(0, "not reached", f"execution stopped before this check: {run.status}")
    errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
    if errors:
        return row(0, "error", f"the check cell raised {errors[0].ename}: {errors[0].evalue}")
    records = [o.data[MIME] for o in cell.get("outputs", []) if o.output_type == "execute_result" and MIME in o.data]
    if not records:
        return row(0, "error", "the check cell gave no result (was `course` or the function replaced?)")
    points, _ = determine_grade(cell)
    record = records[0]
    message = record["message"] + (f" Hint: {record['hint']}" if record.get("hint") else "")
    if (points or 0) != record["points"]:  # nbgrader's rule decides; say why it differs from the check
        message += (f" (The check gave {record['points']:g} points, nbgrader's rule {points or 0:g}: the cell also "
                    f"wrote to stderr, which it scores as 0.)")
    return row(points or 0, record["status"], message)


def execute(nb, params: dict, timeout: float) -> Run:
    """Run a notebook with `params` injected, errors allowed, within `timeout` seconds in all."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.parameterize import parameterize_notebook

    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    nb = parameterize_notebook(nb, params)
    deadline = time.monotonic() + timeout
    current = {"index": None}

    def on_cell_start(cell, cell_index, **_):
        current["index"] = cell_index

    client = NotebookClient(nb, kernel_name="python3", allow_errors=True, record_timing=False,
                            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
                            on_cell_start=on_cell_start, resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()
    except CellTimeoutError:
        i = current["index"]
        return Run(nb, i, f"ran past its time limit of {timeout:g} s in cell {i} ({_first_line(nb.cells[i])})")
    except DeadKernelError:
        i = current["index"]
        return Run(nb, i, f"its kernel died in cell {i} ({_first_line(nb.cells[i])})")
    failed = [(i, o) for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if o.output_type == "error"]
    if failed:
        i, out = failed[0]
        return Run(nb, None, f"ran to the end; {len(failed)} cell(s) raised, first cell {i} "
                             f"({_first_line(nb.cells[i])}): {out.ename}")
    return Run(nb, None, "ran to the end without errors")


def _first_line(cell) -> str:
    line = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
    return line if len(line) <= 60 else line[:57] + "..."


def default_out_dir(folder: Path) -> Path:
    from htlib.data.paths import PROJECT_ROOT

    return PROJECT_ROOT / "runs" / "grades" / Path(folder).resolve().name


__all__ = ["COLUMNS", "DEFAULT_TIMEOUT", "STUDENT_DIR", "grade_folder", "submissions", "summary"]
