"""The grader (python -m htlib.course grade) on real submissions at `ci`: the teacher's notebooks get
full marks, the student versions zero with the guidance messages, a planted partial submission the
points its answers deserve; and a notebook that is missing, unreadable, raises, loops forever or
kills its kernel gets rows that say so, while the grader goes on."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from htlib.course import EXERCISES
from htlib.course.core import CourseError
from htlib.course.release import (
    STUDENT_DIR,
    nbgrader_meta,
    teacher_notebooks,
)

if not os.environ.get("CI"):  # CI installs the course extra (make test): there it must not be skipped
    pytest.importorskip("nbgrader", reason="the course extra: pip install -e .[course]")

from htlib.course.grade import COLUMNS, grade_folder
from htlib.course.sample_class import PLANTED, plant_partial

EXPECTED_PARTIAL = sum(points for _, points in PLANTED.values())


@pytest.fixture(scope="module")
def graded(tmp_path_factory, omniglot_data_dir):
    """One grading run over three students: the teacher's notebooks, the student versions, the planted one."""
    root = tmp_path_factory.mktemp("submissions")
    for name in ("teacher", "stubs", "partial"):
        (root / name).mkdir()
    for path in teacher_notebooks().values():
        shutil.copy(path, root / "teacher" / path.name)
        shutil.copy(STUDENT_DIR / path.name, root / "stubs" / path.name)
    plant_partial(root / "partial")
    out = tmp_path_factory.mktemp("graded")
    table = grade_folder(root, out, profile="ci", dataset="omniglot", data_dir=str(omniglot_data_dir))
    return table, out


def test_one_row_per_student_and_exercise_in_the_csv(graded):
    table, out = graded
    on_disk = pd.read_csv(out / "grades.csv", keep_default_na=False)
    assert list(on_disk.columns) == COLUMNS and len(on_disk) == len(table) == 3 * len(EXERCISES)
    assert sorted(set(zip(on_disk.student, on_disk.exercise))) == sorted(
        (s, k) for s in ("partial", "stubs", "teacher") for k in EXERCISES)
    summary = pd.read_csv(out / "summary.csv").set_index("student")
    assert summary.loc["teacher", "points"] == summary.loc["teacher", "max_points"] == sum(
        ex.points for ex in EXERCISES.values())
    assert (out / "executed" / "stubs" / "04_semi_supervised.ipynb").is_file()
    # each submission trained its smoke runs in a folder of its own (notebook 02 trains one at ci)
    assert all((out / "scratch" / student / "ci").is_dir() for student in ("teacher", "stubs"))


def test_the_teachers_notebooks_get_full_marks(graded):
    rows = graded[0][graded[0].student == "teacher"]
    assert (rows.status == "passed").all() and (rows.points == rows.max_points).all()
    assert (rows.notebook_status == "ran to the end without errors").all()


def test_the_student_versions_run_to_the_end_with_zero_marks_and_guidance(graded):
    rows = graded[0][graded[0].student == "stubs"]
    assert (rows.points == 0).all() and (rows.status == "not done yet").all()
    assert rows.message.str.contains("Not done yet").all() and rows.message.str.contains("Hint: replace").all()
    assert (rows.notebook_status == "ran to the end without errors").all()


def test_the_planted_partial_submission_gets_the_points_of_its_answers(graded):
    rows = graded[0][graded[0].student == "partial"].set_index("exercise")
    assert rows.points.sum() == EXPECTED_PARTIAL == 7
    for key, (_, points) in PLANTED.items():
        assert rows.loc[key, "points"] == points, (key, rows.loc[key, "message"])
    assert "That is torch.arange(N).repeat(...)" in rows.loc["split_episode", "message"]
    assert "Forgetting the unlabelled slot" in rows.loc["label_embeddings", "message"]
    assert rows.loc["gap_ci", "status"] == "not done yet"  # its tampered check cell was replaced
    for key in ("sample_tokens", "kernel_from_output", "logits_layer", "mean_ci95"):  # 02 and 05 not handed in
        assert (rows.loc[key, "status"], rows.loc[key, "notebook_status"]) == ("missing", "missing")
        assert rows.loc[key, "message"].startswith("no notebook 0")


# ---------------------------------------------------------------- broken submissions (small notebooks)


def _small(tmp_path: Path, name: str, change) -> None:
    """A small notebook 05 (its exercise cells only, with the teacher's answer), changed by `change`."""
    teacher = nbformat.read(teacher_notebooks()["05"], as_version=4)
    keep = [c for c in teacher.cells if "parameters" in c.metadata.get("tags", []) or nbgrader_meta(c)]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch"), *keep],
                                  metadata=teacher.metadata)
    change(nb)
    (tmp_path / name).mkdir()
    nbformat.write(nb, str(tmp_path / name / "05_results_vs_paper.ipynb"))


def _replace(key: str, source: str):
    def change(nb):
        next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == key).source = source
    return change


def test_a_broken_submission_gets_a_clear_row_and_the_grader_goes_on(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    _small(subs, "a_fine", lambda nb: None)
    _small(subs, "b_raises", _replace("mean_ci95", "raise ValueError('planted')"))
    _small(subs, "c_loops", lambda nb: nb.cells.insert(1, nbformat.v4.new_code_cell("while True:\n    pass")))
    _small(subs, "d_dies", lambda nb: nb.cells.insert(1, nbformat.v4.new_code_cell("import os\nos._exit(1)")))
    _small(subs, "e_deleted", lambda nb: nb.cells.pop())
    (subs / "f_unreadable").mkdir()
    (subs / "f_unreadable" / "05_results_vs_paper.ipynb").write_text('{"cells": [')
    (subs / "g_missing").mkdir()
    (subs / "g_missing" / "05_results_vs_paper (1).ipynb").write_text("{}")  # handed in under another name
    table = grade_folder(subs, tmp_path / "out", only=["05"], timeout=30).set_index("student")
    assert list(table.index) == ["a_fine", "b_raises", "c_loops", "d_dies", "e_deleted", "f_unreadable", "g_missing"]
    row = table.loc
    assert (row["a_fine", "status"], row["a_fine", "points"]) == ("passed", 2)
    assert row["b_raises", "status"] == "error" and row["b_raises", "points"] == 0
    assert "raised NameError: name 'mean_ci95' is not defined" in row["b_raises", "message"]
    assert "cell(s) raised" in row["b_raises", "notebook_status"] and "ValueError" in row["b_raises", "notebook_status"]
    # the endless loop is interrupted after its 30 s and the notebook goes on: its check still counts
    assert (row["c_loops", "status"], row["c_loops", "points"]) == ("passed", 2)
    assert "cell 1 (while True:) ran past the time limit of 30 s per cell and was interrupted" in \
        row["c_loops", "notebook_status"]
    assert row["d_dies", "status"] == "not reached" and "kernel died" in row["d_dies", "notebook_status"]
    assert row["e_deleted", "status"] == "error" and "was deleted" in row["e_deleted", "message"]
    assert row["f_unreadable", "status"] == "unreadable" and "not a readable notebook" in row["f_unreadable", "message"]
    assert row["g_missing", "status"] == "missing"
    assert "found 05_results_vs_paper (1).ipynb: rename it 05_results_vs_paper.ipynb" in row["g_missing", "message"]
    assert (table.max_points == 2).all()
    # seconds per notebook graded, in timings.csv: the loop costs its limit, the others far less
    timings = pd.read_csv(tmp_path / "out" / "timings.csv").set_index("student")
    assert list(timings.index) == list(table.index) and (timings.notebook == 5).all()
    assert timings.loc["c_loops", "seconds"] >= 30 > timings.loc["a_fine", "seconds"]


def test_a_folder_that_is_not_there_or_empty_says_what_is_expected(tmp_path, capsys):
    from htlib.course.__main__ import main

    with pytest.raises(CourseError, match="no folder .*one folder per student"):
        grade_folder(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(CourseError, match="holds no student folders"):
        grade_folder(tmp_path, tmp_path / "out")
    assert main(["grade", str(tmp_path / "nope")]) == 2
    assert "error: no folder" in capsys.readouterr().err


def test_nbgrader_decides_the_points_and_the_row_says_why_they_differ_from_the_check():
    """A check cell that also wrote to stderr scores 0 under nbgrader's rule, whatever the check said."""
    from htlib.course import check
    from htlib.course.grade import Run, score

    result = check("mean_ci95", lambda a: EXERCISES["mean_ci95"].reference(a))
    cell = nbformat.v4.new_code_cell("result", metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": True, "points": 2, "grade_id": "mean_ci95_check",
        "schema_version": 3}})
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="noise\n"),
                    nbformat.v4.new_output("execute_result", data=result._repr_mimebundle_(), execution_count=1)]
    nb = nbformat.v4.new_notebook(cells=[cell])
    row = score("someone", "05", EXERCISES["mean_ci95"], Run(nb, None, "ran to the end without errors"), 0)
    assert (row.points, row.status) == (0.0, "passed")
    assert "The check gave 2 points, nbgrader's rule 0: the cell also wrote to stderr" in row.message
    cell.outputs = cell.outputs[1:]
    assert score("someone", "05", EXERCISES["mean_ci95"], Run(nb, None, "ran"), 0).points == 2.0


def test_each_student_is_written_as_graded_and_a_rerun_keeps_them(tmp_path, monkeypatch):
    """A crash during the second student loses only that student; a rerun grades only what is
    missing; feedback and the gradebook come with the grades."""
    import htlib.course.grade as grading

    subs = tmp_path / "subs"
    subs.mkdir()
    _small(subs, "alice", lambda nb: None)
    _small(subs, "bob", _replace("mean_ci95", "raise ValueError('planted')"))
    out = tmp_path / "out"
    real = grading.grade_notebook

    def crash_on_bob(student, *args, **kwargs):
        if student == "bob":
            raise OSError(28, "No space left on device")
        return real(student, *args, **kwargs)

    monkeypatch.setattr(grading, "grade_notebook", crash_on_bob)
    with pytest.raises(OSError):
        grade_folder(subs, out, only=["05"], timeout=60)
    assert list(pd.read_csv(out / "grades.csv")["student"].unique()) == ["alice"]  # alice survived the crash
    monkeypatch.setattr(grading, "grade_notebook", real)
    said = []
    table = grade_folder(subs, out, only=["05"], timeout=60, log=said.append)
    assert said[0] == "[grade] alice: graded before, kept (regrade to grade again)"
    assert list(table["student"]) == ["alice", "bob"] and list(table["points"]) == [2.0, 0.0]
    book = pd.read_csv(out / "gradebook.csv", index_col="student")
    assert list(book.index) == ["alice", "bob"] and list(book["mean_ci95"]) == [2, 0] and list(book["total"]) == [2, 0]
    text = (out / "feedback" / "bob.md").read_text()
    assert text.startswith("# Feedback for bob\n\n**0 of 2 points** (0%).")
    assert "| mean_ci95 | 0 / 2 | error | the check cell raised NameError" in text
    assert "How it ran: ran to the end; 2 cell(s) raised, first cell 3" in text
    again = grade_folder(subs, out, only=["05"], timeout=60, log=said.append, regrade=True)
    assert again.equals(table) and not any("graded before" in line for line in said[3:])


def test_default_output_folders_of_same_named_submission_folders_differ(tmp_path):
    from htlib.course.grade import default_out_dir

    one, two = tmp_path / "a" / "week1", tmp_path / "b" / "week1"
    assert default_out_dir(one) != default_out_dir(two)
    assert default_out_dir(one).name.startswith("week1-") and default_out_dir(one) == default_out_dir(one)


def test_loose_files_and_a_folder_one_level_too_deep_are_named_not_skipped(tmp_path):
    subs = tmp_path / "subs"
    (subs / "h_nested" / "h_nested").mkdir(parents=True)
    (subs / "h_nested" / "h_nested" / "05_results_vs_paper.ipynb").write_text("{}")  # a zip unpacked one level deep
    (subs / "bob_05_results_vs_paper.ipynb").write_text("{}")  # handed in without a folder
    (subs / ".DS_Store").write_text("")
    said = []
    table = grade_folder(subs, tmp_path / "out", only=["05"], log=said.append).set_index("student")
    assert list(table.index.unique()) == ["h_nested"] and (table.status == "missing").all()
    assert "found it in h_nested/h_nested/: move the notebooks up into h_nested/" in table.message.iloc[0]
    assert any("not graded, loose at the top" in line and "bob_05_results_vs_paper.ipynb" in line for line in said)
    assert (tmp_path / "out" / "ignored.txt").read_text() == "bob_05_results_vs_paper.ipynb\n"


def test_cheats_that_pass_in_the_kernel_score_0_outside_it(tmp_path):
    """Patching the checker in an earlier cell, or calling htlib's reference, passes the check cell in
    the student's kernel; the grader's second check, on the solution cell alone, scores them 0."""
    subs = tmp_path / "subs"
    subs.mkdir()
    patch = ("from htlib import course\nfrom htlib.course.exercises import EXERCISES\n_real = course.check\n"
             "course.check = lambda key, answer: _real(key, lambda *a: EXERCISES[key].reference(*a))")
    wrong = "def mean_ci95(per_episode):\n    return 0.0, 0.0"
    _small(subs, "a_patches_the_checker", lambda nb: (nb.cells.insert(1, nbformat.v4.new_code_cell(patch)),
                                                      _replace("mean_ci95", wrong)(nb)))
    calls = "def mean_ci95(per_episode):\n    from htlib.course import EXERCISES\n    return EXERCISES['mean_ci95'].reference(per_episode)"
    _small(subs, "b_calls_the_reference", _replace("mean_ci95", calls))
    _small(subs, "c_honest", lambda nb: None)
    table = grade_folder(subs, tmp_path / "out", only=["05"], timeout=60).set_index("student")
    assert table.loc["c_honest", "points"] == 2 and table.loc["c_honest", "status"] == "passed"
    for cheat, said in [("a_patches_the_checker", "the mean is 0.00000; it should be"),
                        ("b_calls_the_reference", "calls htlib's reference solution")]:
        assert (table.loc[cheat, "points"], table.loc[cheat, "status"]) == (0, "wrong"), cheat
        assert "passed in the notebook but not when the grader ran it on the solution cell alone" in \
            table.loc[cheat, "message"] and said in table.loc[cheat, "message"], table.loc[cheat, "message"]


def test_a_sample_class_mixes_the_kinds_and_is_timed_per_notebook(tmp_path):
    from htlib.course.sample_class import CLASS_MIX, ENDLESS_LOOP, build_class, time_class

    kinds = build_class(tmp_path / "class", 12)
    assert list(kinds.values()) == [*CLASS_MIX, *CLASS_MIX[:2]]
    looping = next(s for s, k in kinds.items() if k == "endless-loop")
    assert any(c.source == ENDLESS_LOOP for c in nbformat.read(tmp_path / "class" / looping / "01_episodes.ipynb",
                                                                 as_version=4).cells)
    assert sorted(p.name[:2] for p in (tmp_path / "class" / "student_02").iterdir()) == ["01", "03", "04"]  # partial
    out = time_class(2, timeout=60, out_csv=tmp_path / "timed.csv", only=["05"], log=lambda line: None)
    assert list(out.kind) == ["complete", "partial"] and (out.students == 2).all() and (out.timeout == 60).all()
    by_kind = out.set_index("kind")
    assert by_kind.loc["complete", "seconds"] > 0 and by_kind.loc["partial", "notebook_status"] == "missing"
    assert out.wall_seconds.iloc[0] >= out.seconds.sum()
    assert by_kind.loc["complete", "points"] == by_kind.loc["complete", "max_points"] == 2
    assert len(pd.read_csv(tmp_path / "timed.csv")) == 2
