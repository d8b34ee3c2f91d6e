"""Student versions (htlib.course.release): the committed ones are a fresh build of the teacher's
notebooks, hold no solution, keep the checks locked, and a malformed exercise cell is refused."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import tomllib

from htlib.course import EXERCISES, exercises_of
from htlib.course.core import CourseError
from htlib.course.release import (
    BEGIN,
    END,
    STUDENT_DIR,
    check_cell_id,
    check_teacher_notebook,
    nbgrader_meta,
    stale,
    teacher_notebooks,
)

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("CI"):  # CI installs the course extra (make test): there it must not be skipped
    pytest.importorskip("nbgrader", reason="the course extra: pip install -e .[course]")


def _cells(path: Path) -> dict:
    return {nbgrader_meta(c)["grade_id"]: c for c in nbformat.read(path, as_version=4).cells if nbgrader_meta(c)}


def test_the_committed_student_versions_are_a_fresh_build_of_the_teachers_notebooks():
    assert stale() == [], "run `make student` and commit notebooks/student/"


@pytest.mark.parametrize("prefix, teacher", list(teacher_notebooks().items()))
def test_a_student_version_holds_stubs_not_solutions_and_the_same_locked_checks(prefix, teacher):
    student = STUDENT_DIR / teacher.name
    text = student.read_text()
    nb = nbformat.reads(text, as_version=4)
    assert BEGIN not in text and END not in text
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    mine, theirs = _cells(student), _cells(teacher)
    for ex in exercises_of(prefix):
        answer = theirs[ex.key].source
        body = answer[answer.index(BEGIN) + len(BEGIN):answer.index(END)]
        solution_lines = [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        assert solution_lines and not [ln for ln in solution_lines if ln in mine[ex.key].source]
        assert "raise NotImplementedError()" in mine[ex.key].source and f"def {ex.key}(" in mine[ex.key].source
        check = mine[check_cell_id(ex.key)]
        assert check.source == theirs[check_cell_id(ex.key)].source
        assert nbgrader_meta(check)["points"] == ex.points and check.metadata["editable"] is False
    assert f"`{exercises_of(prefix)[0].key}`" in nb.cells[0].source  # the header lists the exercises


def _teacher(prefix: str = "05"):
    return nbformat.read(teacher_notebooks()[prefix], as_version=4)


def _edit(nb, grade_id: str, change) -> None:
    (cell,) = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id]
    change(cell)


@pytest.mark.parametrize("change, message", [
    (lambda nb: _edit(nb, "mean_ci95", lambda c: setattr(c, "source", c.source.replace("    ### BEGIN", "### BEGIN"))),
     "inside the function body"),
    (lambda nb: _edit(nb, "mean_ci95_check", lambda c: c.metadata.nbgrader.update(points=5)),
     "worth 2 points"),
    (lambda nb: nb.cells.remove(next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "mean_ci95_check")),
     "no such cell"),
    (lambda nb: _edit(nb, "mean_ci95", lambda c: c.metadata.nbgrader.update(grade_id="ci")),
     "no solution cell with grade_id 'mean_ci95'"),
])
def test_a_malformed_exercise_cell_is_refused_with_what_to_fix(change, message):
    nb = copy.deepcopy(_teacher())
    check_teacher_notebook(nb, "05")  # the committed one is fine
    change(nb)
    with pytest.raises(CourseError, match=message):
        check_teacher_notebook(nb, "05")


def test_student_check_fails_on_a_stale_folder_and_says_what_to_run(tmp_path):
    from htlib.course.__main__ import main

    assert main(["student", "--out", str(tmp_path)]) == 0
    assert main(["student", "--check", "--out", str(tmp_path)]) == 0
    path = tmp_path / "04_semi_supervised.ipynb"
    path.write_text(path.read_text().replace("raise NotImplementedError()", "return None", 1))
    (tmp_path / "09_extra.ipynb").write_text("{}")
    assert main(["student", "--check", "--out", str(tmp_path)]) == 1
    assert stale(tmp_path) == [f"{path} differs from a fresh build of 04_semi_supervised.ipynb",
                               f"{tmp_path / '09_extra.ipynb'} has no teacher's notebook"]


def test_the_course_tools_are_an_optional_extra_and_students_need_only_htlib():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any("nbgrader" in d for d in project["dependencies"])
    assert any(d.startswith("nbgrader") for d in project["optional-dependencies"]["course"])
    code = ("import sys, torch; from htlib import course; "
            "course.check('mean_ci95', lambda a: (float(a.mean()), 0.0)); "
            "assert not [m for m in sys.modules if m.startswith('nbgrader')], 'checks import nbgrader'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_exercise_belongs_to_a_teachers_notebook():
    found = {grade_id for path in teacher_notebooks().values() for grade_id in _cells(path)}
    assert found == set(EXERCISES) | {check_cell_id(k) for k in EXERCISES}


@pytest.mark.parametrize("prefix, teacher", list(teacher_notebooks().items()))
def test_a_student_version_runs_top_to_bottom_at_its_default_profile(prefix, teacher, omniglot_data_dir, tmp_path):
    """At `ci` the grading tests run them; here at the defaults a student starts with (`quick`, which
    reads the committed runs): every exercise reports 'not done yet' and nothing raises."""
    import papermill

    from htlib.course.core import MIME
    from htlib.tools.notebooks import NOTEBOOK_DIR

    out = tmp_path / teacher.name
    papermill.execute_notebook(str(STUDENT_DIR / teacher.name), str(out), cwd=str(NOTEBOOK_DIR),
                               parameters={"data_dir": str(omniglot_data_dir)}, progress_bar=False,
                               kernel_name="python3")
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    records = [o.data[MIME] for o in outputs if o.output_type == "execute_result" and MIME in o.data]
    assert [(r["exercise"], r["status"]) for r in records] == [(ex.key, "not done yet") for ex in exercises_of(prefix)]


def test_the_teachers_page_lists_every_exercise_with_its_points_and_time():
    page = (ROOT / "docs" / "teaching.md").read_text()
    rows = {line.split("|")[2].strip(" `"): line for line in page.splitlines()
            if line.startswith("| 0") and line.count("|") == 7}
    assert set(rows) == set(EXERCISES)
    for key, ex in EXERCISES.items():
        cells = [c.strip() for c in rows[key].split("|")]
        assert (cells[1], cells[4], cells[5]) == (ex.notebook, str(ex.points), f"{ex.minutes} min"), key
