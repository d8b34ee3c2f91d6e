"""Student versions of the notebooks, made with nbgrader's own preprocessors (the `course` extra).

The teacher's notebooks (notebooks/01..05) mark each exercise in nbgrader's format:

* a **solution cell** (metadata nbgrader.solution, grade_id = the exercise's key) defining the
  function, whose body holds the answer between `### BEGIN SOLUTION` and `### END SOLUTION`;
* a **check cell** (nbgrader.grade and locked, grade_id = key + "_check", points from
  `htlib.course.EXERCISES`) that runs `course.check` and ends with its result (the points).

`build()` runs the preprocessors that `nbgrader generate_assignment` runs, minus the ones that
need its gradebook database: the solution regions become nbgrader's stub
(`raise NotImplementedError()`), outputs are cleared, check cells locked, checksums added. Since
every solution region sits inside a function body, the stub only raises when the function is
called, and the check catches that ("not done yet"): a student version runs top to bottom.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat

from htlib.course.core import CourseError
from htlib.course.exercises import NOTEBOOKS, exercises_of
from htlib.tools.notebooks import NOTEBOOK_DIR

STUDENT_DIR = NOTEBOOK_DIR / "student"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def teacher_notebooks() -> dict[str, Path]:
    """{"01": notebooks/01_episodes.ipynb, ...}: the teacher's notebook of every notebook with exercises."""
    found = {}
    for prefix in NOTEBOOKS:
        books = sorted(NOTEBOOK_DIR.glob(f"{prefix}_*.ipynb"))
        if len(books) != 1:
            raise CourseError(f"expected one notebook {prefix}_*.ipynb in {NOTEBOOK_DIR}, found {len(books)}")
        found[prefix] = books[0]
    return found


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def check_cell_id(key: str) -> str:
    return f"{key}_check"


def check_teacher_notebook(nb, prefix: str) -> None:
    """The exercise cells of notebook `prefix` are exactly those of EXERCISES, in nbgrader's format.

    Raises CourseError naming the cell and what to fix (before anything is written)."""
    where = f"notebook {prefix}"
    cells = {nbgrader_meta(c).get("grade_id"): c for c in nb.cells if nbgrader_meta(c)}
    expected = set()
    for ex in exercises_of(prefix):
        expected |= {ex.key, check_cell_id(ex.key)}
        solution, graded = cells.get(ex.key), cells.get(check_cell_id(ex.key))
        if solution is None or not nbgrader_meta(solution).get("solution"):
            raise CourseError(f"{where}: no solution cell with grade_id {ex.key!r} for exercise {ex.key}")
        lines = solution.source.splitlines()
        marks = [line for line in lines if BEGIN in line or END in line]
        if len(marks) != 2 or BEGIN not in marks[0] or not all(m.startswith((" ", "\t")) for m in marks):
            raise CourseError(f"{where}, cell {ex.key!r}: put one `{BEGIN}` ... `{END}` region inside the function "
                              f"body (indented), so that the student's stub only raises when it is called")
        if f"def {ex.key}(" not in solution.source:
            raise CourseError(f"{where}, cell {ex.key!r}: the solution cell must define `def {ex.key}(...)`")
        meta = nbgrader_meta(graded) if graded is not None else {}
        if not (meta.get("grade") and meta.get("locked")) or meta.get("points") != ex.points:
            raise CourseError(f"{where}: the check cell {check_cell_id(ex.key)!r} must be a locked grade cell worth "
                              f"{ex.points} points (htlib.course.EXERCISES), got {meta or 'no such cell'}")
        if f'course.check("{ex.key}", {ex.key})' not in graded.source:
            raise CourseError(f"{where}: the check cell {check_cell_id(ex.key)!r} must call "
                              f'course.check("{ex.key}", {ex.key})')
        if list(cells).index(ex.key) > list(cells).index(check_cell_id(ex.key)):
            raise CourseError(f"{where}: the check of {ex.key} comes before its solution cell")
    extra = set(cells) - expected
    if extra:
        raise CourseError(f"{where}: nbgrader cells {sorted(extra)} belong to no exercise of htlib.course.EXERCISES")


def _header(prefix: str, source: Path):
    lines = [f"**Student version** of `{source.name}`, made by `make student`: do not edit it by hand.",
             "", "Your exercises (write the body of each function, then run its check cell):", ""]
    for ex in exercises_of(prefix):
        lines.append(f"- `{ex.key}`: {ex.title} ({ex.points} points, about {ex.minutes} min)")
    lines += ["", "Until an exercise passes, the notebook uses htlib's reference in its place, so it runs top "
                  "to bottom from the start. The teacher's page is `docs/teaching.md`."]
    cell = nbformat.v4.new_markdown_cell("\n".join(lines))
    cell.id = "student-version"  # a fixed id: a rebuild gives the same file
    return cell


def student_version(nb, prefix: str, source: Path):
    """The student version of a teacher's notebook (a new notebook; `nb` is not changed)."""
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearHiddenTests,
        ClearMarkScheme,
        ClearOutput,
        ClearSolutions,
        ComputeChecksums,
        LockCells,
    )

    check_teacher_notebook(nb, prefix)
    nb = copy.deepcopy(nb)
    resources: dict = {}
    # the order of nbgrader's GenerateAssignment, without its database steps (SaveCells) and header
    for step in (LockCells(), ClearSolutions(), ClearOutput(), CheckCellMetadata(), ComputeChecksums(),
                 ClearHiddenTests(), ClearMarkScheme(), ComputeChecksums(), CheckCellMetadata()):
        nb, resources = step.preprocess(nb, resources)
    nb.metadata.pop("widgets", None)
    nb.cells.insert(0, _header(prefix, source))
    return nb


def build(out_dir: Path = STUDENT_DIR) -> list[Path]:
    """Write the student version of every notebook with exercises into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for prefix, source in teacher_notebooks().items():
        target = out_dir / source.name
        target.write_text(render(prefix, source))
        written.append(target)
    return written


def render(prefix: str, source: Path) -> str:
    """The student version's file content (deterministic: the same teacher's notebook gives the same text)."""
    return nbformat.writes(student_version(nbformat.read(source, as_version=4), prefix, source)) + "\n"


def stale(out_dir: Path = STUDENT_DIR) -> list[str]:
    """What differs between the committed student versions and a fresh build (empty: up to date)."""
    out_dir = Path(out_dir)
    problems = []
    sources = teacher_notebooks()
    for prefix, source in sources.items():
        target = out_dir / source.name
        if not target.is_file():
            problems.append(f"{target} is missing")
        elif target.read_text() != render(prefix, source):
            problems.append(f"{target} differs from a fresh build of {source.name}")
    expected = {s.name for s in sources.values()}
    problems += [f"{p} has no teacher's notebook" for p in sorted(out_dir.glob("*.ipynb")) if p.name not in expected]
    return problems


def released_check_cells(out_dir: Path = STUDENT_DIR) -> dict[str, str]:
    """{grade_id of a check cell: its source} from the released student versions; the grader runs
    these in place of whatever a submission holds in those cells (as nbgrader autograde does)."""
    cells = {}
    for source in teacher_notebooks().values():
        path = Path(out_dir) / source.name
        if not path.is_file():
            raise CourseError(f"no student version {path}: run `make student` (python -m htlib.course student)")
        for cell in nbformat.read(path, as_version=4).cells:
            meta = nbgrader_meta(cell)
            if meta.get("grade") and not meta.get("solution"):
                cells[meta["grade_id"]] = cell.source
    return cells
