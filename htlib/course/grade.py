"""Grade a folder of submissions: one CSV row per student and exercise, a summary, a gradebook
and a feedback file per student.

Layout: ``FOLDER/<student>/<notebook>.ipynb``, the notebooks named as in notebooks/student/
(``01_episodes.ipynb`` ...). Each submission is executed in a fresh kernel at the given profile
(papermill injects it as it does for every notebook run), with errors allowed so that a broken
cell costs only what depends on it, and with a time limit per cell, as nbgrader's: a cell that
runs past it is interrupted and the notebook goes on. As nbgrader's autograde does, the check
cells are first replaced by the released ones, and each check cell is scored by nbgrader's rule
(`nbgrader.utils.determine_grade`: the cell's value is its points, an error scores 0). A notebook
that is missing, unreadable, raises, runs past a limit or kills its kernel gets rows that say so;
the grader itself goes on to the next.

The files are written after every student, so a crash (or a full disk) loses at most the student
in progress; a second run into the same folder grades only the students not graded yet
(`regrade=True` starts again).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import os
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
from htlib.utils import write_atomic, write_text_atomic

# seconds per cell: far above what any cell needs at `ci` (the slowest trains for a few seconds), so
# that only a loop that never ends, or a student's training at a large budget, is interrupted
DEFAULT_TIMEOUT = 300
COLUMNS = ["student", "notebook", "exercise", "points", "max_points", "status", "message", "notebook_status"]
TIMING_COLUMNS = ["student", "notebook", "seconds", "notebook_status"]  # timings.csv: one row per notebook graded


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


def loose_files(folder: Path) -> list[str]:
    """Files at the top of the submissions folder (hidden ones aside): nobody's, so not graded; the
    grader names them (log and ignored.txt) rather than skipping them in silence."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


def grade_folder(folder: Path, out_dir: Path, profile: str = "ci", timeout: float = DEFAULT_TIMEOUT,
                 dataset: str | None = None, data_dir: str | None = None, only: list[str] | None = None,
                 log=print, regrade: bool = False) -> pd.DataFrame:
    """Grade every student in `folder` (`timeout`: seconds per cell); write grades.csv, summary.csv,
    gradebook.csv, timings.csv (seconds per notebook), feedback/<student>.md and the executed
    notebooks to `out_dir`, after each student.
    Students already graded there for these notebooks are kept, unless `regrade`."""
    from htlib.profiles import get_profile

    get_profile(profile)  # a typo fails here, before any notebook runs
    if not timeout > 0:
        raise CourseError(f"the time limit per cell must be > 0 seconds, got {timeout!r}")
    students = submissions(folder)
    loose = loose_files(folder)
    books = {p: s for p, s in teacher_notebooks().items() if not only or p in only}
    if not books:
        raise CourseError(f"--only {only} matches none of the notebooks with exercises {NOTEBOOKS}")
    released = released_check_cells()
    params = {"profile": profile, **({"dataset": dataset} if dataset else {}),
              **({"data_dir": str(Path(data_dir).resolve())} if data_dir else {})}
    out_dir = Path(out_dir)
    done = pd.DataFrame(columns=COLUMNS) if regrade else graded_before(out_dir)
    if loose:
        log(f"[grade] not graded, loose at the top of {folder}: {', '.join(loose)} (a student's notebooks go in "
            f"{folder}/<student>/; listed in ignored.txt)")
        write_text_atomic(out_dir / "ignored.txt", "".join(f"{name}\n" for name in loose))
    rows: list[Row] = []
    timings = [] if regrade else timings_before(out_dir)
    for student in students:
        kept = done[done["student"] == student.name]
        if set(books) <= set(kept["notebook"]):  # graded by an earlier run into the same folder
            rows += [Row(**r) for r in kept[kept["notebook"].isin(books)].to_dict("records")]
            log(f"[grade] {student.name}: graded before, kept (regrade to grade again)")
            continue
        for prefix, teacher in books.items():
            path = student / teacher.name
            start = time.perf_counter()
            graded = grade_notebook(student.name, prefix, path, released, params, timeout,
                                    out_dir / "executed" / student.name / teacher.name,
                                    scratch=out_dir / "scratch" / student.name)
            seconds = time.perf_counter() - start
            rows += graded
            timings = [t for t in timings if (t["student"], t["notebook"]) != (student.name, prefix)]
            timings.append({"student": student.name, "notebook": prefix, "seconds": round(seconds, 1),
                            "notebook_status": graded[0].notebook_status})
            got = sum(r.points for r in graded)
            log(f"[grade] {student.name}/{teacher.name}: {got:g} / {sum(r.max_points for r in graded):g} points, "
                f"{graded[0].notebook_status} ({seconds:.0f} s)")
        write_outputs(pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS), out_dir)
        write_atomic(out_dir / "timings.csv",
                     lambda tmp: pd.DataFrame(timings, columns=TIMING_COLUMNS).to_csv(tmp, index=False))
    table = pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)
    write_outputs(table, out_dir)
    return table


def graded_before(out_dir: Path) -> pd.DataFrame:
    """The rows of an earlier run into `out_dir` (none if it has no grades.csv)."""
    path = Path(out_dir) / "grades.csv"
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    text = ("student", "notebook", "exercise", "status", "message", "notebook_status")  # "05" stays "05"
    table = pd.read_csv(path, keep_default_na=False, dtype={name: str for name in text})
    if list(table.columns) != COLUMNS:
        raise CourseError(f"{path} is not a grades.csv of this grader (columns {list(table.columns)}); grade into "
                          f"another --out, or pass --regrade to replace it")
    return table.astype({"points": float, "max_points": float})


def timings_before(out_dir: Path) -> list[dict]:
    """The rows of an earlier run's timings.csv in `out_dir` (none if it has none)."""
    path = Path(out_dir) / "timings.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path, keep_default_na=False, dtype={"student": str, "notebook": str})
    if list(table.columns) != TIMING_COLUMNS:
        raise CourseError(f"{path} is not a timings.csv of this grader (columns {list(table.columns)}); grade into "
                          f"another --out, or pass --regrade to replace it")
    return table.to_dict("records")


def write_outputs(table: pd.DataFrame, out_dir: Path) -> None:
    """grades.csv (long), summary.csv, gradebook.csv (student x exercise) and one feedback file per student."""
    write_atomic(out_dir / "grades.csv", lambda tmp: table.to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC))
    write_atomic(out_dir / "summary.csv", lambda tmp: summary(table).to_csv(tmp, index=False))
    write_atomic(out_dir / "gradebook.csv", lambda tmp: gradebook(table).to_csv(tmp))
    for student, rows in table.groupby("student", sort=False):
        write_text_atomic(out_dir / "feedback" / f"{student}.md", feedback(student, rows))


def gradebook(table: pd.DataFrame) -> pd.DataFrame:
    """One row per student, one column per exercise (its points), then the total."""
    wide = table.pivot_table(index="student", columns="exercise", values="points", aggfunc="sum", sort=False)
    wide = wide[list(dict.fromkeys(table["exercise"]))]
    wide["total"] = table.groupby("student", sort=False)["points"].sum()
    wide["max_points"] = table.groupby("student", sort=False)["max_points"].sum()
    return wide


def feedback(student: str, rows: pd.DataFrame) -> str:
    """What a student reads: per notebook, how it ran, then each exercise's points and message."""
    got, most = rows["points"].sum(), rows["max_points"].sum()
    lines = [f"# Feedback for {student}", "", f"**{got:g} of {most:g} points** ({100 * got / most:.0f}%).", ""]
    for notebook, part in rows.groupby("notebook", sort=False):
        lines += [f"## {notebook}", "", f"How it ran: {part['notebook_status'].iloc[0]}.", "",
                  "| exercise | points | result | what the check said |", "| --- | --- | --- | --- |"]
        lines += [f"| {r.exercise} | {r.points:g} / {r.max_points:g} | {r.status} | "
                  f"{str(r.message).replace('|', '/')} |" for r in part.itertuples()]
        lines.append("")
    return "\n".join(lines)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per student: points, maximum, and how many exercises ended in each status."""
    counts = pd.crosstab(table["student"], table["status"])
    totals = table.groupby("student")[["points", "max_points"]].sum()
    out = totals.join(counts).fillna(0).reset_index()
    out["percent"] = (100 * out["points"] / out["max_points"]).round(1)
    return out[["student", "points", "max_points", "percent", *counts.columns]]


def grade_notebook(student: str, prefix: str, path: Path, released: dict[str, str], params: dict,
                   timeout: float, executed_path: Path, scratch: Path | None = None) -> list[Row]:
    """Rows for the exercises of one notebook of one student. `scratch`: the folder of the smoke runs
    the notebook trains (HTLIB_SCRATCH), its own for each student."""
    exercises = exercises_of(prefix)

    def rows_all(status: str, message: str, notebook_status: str) -> list[Row]:
        return [Row(student, prefix, ex.key, 0.0, float(ex.points), status, message, notebook_status)
                for ex in exercises]

    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob(f"{prefix}*.ipynb"))  # e.g. a renamed copy
        deeper = sorted({f"{path.parent.name}/{p.parent.name}" for p in path.parent.glob(f"*/{prefix}*.ipynb")})  # unzipped
        said = (f" (found {', '.join(near)}: rename it {path.name})" if near else
                f" (found it in {', '.join(deeper)}/: move the notebooks up into {path.parent.name}/)" if deeper
                else "")
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
    # the smoke runs a notebook trains go to this student's own folder: a run one student trained is
    # never "loaded" by the next, nor is the teacher's
    with _scratch(scratch) if scratch is not None else contextlib.nullcontext():
        run = execute(nb, params, timeout)
    executed_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(run.nb, str(executed_path))
    index = {nbgrader_meta(c).get("grade_id"): i for i, c in enumerate(run.nb.cells) if nbgrader_meta(c)}
    rows = [score(student, prefix, EXERCISES[ex.key], run, index.get(check_cell_id(ex.key))) for ex in exercises]
    return confirm_outside(rows, run.nb, index, timeout)


def confirm_outside(rows: list[Row], nb, index: dict, timeout: float) -> list[Row]:
    """The exercises that passed in the student's kernel, checked again in a process of the grader's
    on the solution cell alone (htlib.course.recheck); one that fails there scores 0, and its row
    says why."""
    import tempfile

    from htlib.course.recheck import imports_of, recheck_notebook

    items = []
    for row in rows:
        at = index.get(row.exercise)
        if row.status == "passed" and at is not None:
            before = [c.source for c in nb.cells[:at] if c.cell_type == "code"]
            items.append({"key": row.exercise, "imports": imports_of(before), "solution": nb.cells[at].source})
    with tempfile.TemporaryDirectory() as empty:  # where the process runs: no file of the student's to import
        results = recheck_notebook(items, timeout * max(1, len(items)) + 60, Path(empty))
    out = []
    for row in rows:
        outside = results.get(row.exercise)
        if row.status == "passed" and (outside is None or outside["status"] != "passed"):
            why = (outside["message"] if outside else "its solution cell was deleted").rstrip(".")
            hint = f" Hint: {outside['hint']}" if outside and outside.get("hint") else ""
            row = dataclasses.replace(row, points=0.0, status="wrong" if outside is None else outside["status"],
                                      message=f"The check passed in the notebook but not when the grader ran it on "
                                              f"the solution cell alone: {why}.{hint}")
        out.append(row)
    return out


@contextlib.contextmanager
def _scratch(folder: Path):
    """HTLIB_SCRATCH (htlib.runs) set to `folder` while a submission runs: its kernel inherits it."""
    from htlib.runs import SCRATCH_ENV

    before = os.environ.get(SCRATCH_ENV)
    os.environ[SCRATCH_ENV] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SCRATCH_ENV, None)
        else:
            os.environ[SCRATCH_ENV] = before


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
    """Run a notebook with `params` injected, errors allowed, each cell within `timeout` seconds: a
    cell past it is interrupted (as Ctrl-C would) and the next cells run."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.parameterize import parameterize_notebook

    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    nb = parameterize_notebook(nb, params)
    current, started, slow = {"index": None}, {}, []

    def on_cell_start(cell, cell_index, **_):
        current["index"], started[cell_index] = cell_index, time.monotonic()

    def on_cell_executed(cell, cell_index, **_):
        if time.monotonic() - started.get(cell_index, time.monotonic()) >= timeout:
            slow.append(cell_index)

    client = NotebookClient(nb, kernel_name="python3", allow_errors=True, record_timing=False, timeout=timeout,
                            interrupt_on_timeout=True, on_cell_start=on_cell_start,
                            on_cell_executed=on_cell_executed, resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()
    except CellTimeoutError:  # the interrupt did not stop the cell either (e.g. a loop in C)
        i = current["index"]
        return Run(nb, i, f"ran past its time limit of {timeout:g} s in cell {i} ({_first_line(nb.cells[i])}) and "
                          f"did not stop when interrupted")
    except DeadKernelError:
        i = current["index"]
        return Run(nb, i, f"its kernel died in cell {i} ({_first_line(nb.cells[i])})")
    interrupted = "".join(f"; cell {i} ({_first_line(nb.cells[i])}) ran past the time limit of {timeout:g} s per "
                          f"cell and was interrupted" for i in slow)
    failed = [(i, o) for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if o.output_type == "error"
              and i not in slow]
    if failed:
        i, out = failed[0]
        return Run(nb, None, f"ran to the end{interrupted}; {len(failed)} cell(s) raised, first cell {i} "
                             f"({_first_line(nb.cells[i])}): {out.ename}")
    return Run(nb, None, f"ran to the end{interrupted}" if interrupted else "ran to the end without errors")


def _first_line(cell) -> str:
    line = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
    return line if len(line) <= 60 else line[:57] + "..."


def default_out_dir(folder: Path) -> Path:
    """runs/grades/<folder name>-<6 hex of its full path>: two folders of the same name never share one."""
    from htlib.data.paths import PROJECT_ROOT

    folder = Path(folder).resolve()
    return PROJECT_ROOT / "runs" / "grades" / f"{folder.name}-{hashlib.sha1(str(folder).encode()).hexdigest()[:6]}"


__all__ = ["COLUMNS", "DEFAULT_TIMEOUT", "STUDENT_DIR", "TIMING_COLUMNS", "feedback", "grade_folder", "gradebook",
           "submissions", "summary"]
