"""htlib.schemas: every results file is checked when read; a damaged one is one message that names
the file, the line and the field, and nothing is computed or rewritten from it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from htlib.errors import ResultsError
from htlib.schemas import read_result, read_table

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "results" / "sweep_quick_omniglot.csv"


@pytest.mark.parametrize("pattern, kind", [
    ("results/sweep_*.csv", "sweep"), ("results/semi_*.csv", "semi"), ("results/recipe_*.csv", "recipe"),
    ("results/fidelity_*.csv", "recipe"), ("results/bench_*.csv", "bench"),
    ("results/runs/campaign/*/segments.csv", "segments"), ("results/runs/campaign/*/tests.csv", "tests"),
    ("results/runs/**/metrics.csv", "metrics"),
])
def test_every_committed_table_passes_its_schema(pattern, kind):
    files = sorted(ROOT.glob(pattern))
    assert files, pattern
    for path in files:
        assert len(read_table(path, kind)) > 0, path


def test_every_committed_result_passes():
    files = sorted(ROOT.glob("results/runs/**/result.json"))
    assert len(files) > 50
    for path in files:
        read_result(path)


def _damaged(tmp_path: Path, edit) -> Path:
    lines = SWEEP.read_text().splitlines(keepends=True)
    path = tmp_path / SWEEP.name
    path.write_text("".join(edit(lines)))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines + [lines[2]], rf"lines 3, {len(SWEEP.read_text().splitlines()) + 1} repeat the same "
                                       r"method/shots/channels/seed: a duplicated row would count twice"),
    (lambda lines: [lines[0].replace("test_accuracy", "accuracy")] + lines[1:],
     r"the column 'test_accuracy' is missing"),
    (lambda lines: lines[:4] + [lines[4].replace(",0.", ",x0.", 1)] + lines[5:], r"line 5, column '\w+': 'x0\.\d+' "
                                                                               r"is not a number"),
    (lambda lines: lines[:3] + [lines[3][:40] + "\n"], r"line 4, column '\w+': empty is not"),
    (lambda lines: [], r"not a readable CSV"),
], ids=["duplicate", "renamed", "text", "truncated", "empty"])
def test_a_damaged_table_names_its_file_line_and_field(tmp_path, edit, message):
    path = _damaged(tmp_path, edit)
    with pytest.raises(ResultsError, match=message) as info:
        read_table(path, "sweep")
    assert str(info.value).startswith(f"{path}: ") and f"git checkout -- {path}" in str(info.value)


def test_an_accuracy_out_of_range_is_refused(tmp_path):
    path = _damaged(tmp_path, lambda lines: [lines[0], "ht-all,omniglot,20,1,4,0,quick,300,1200,1.5,0.01,600,1,1,"
                                                       "1.0,cpu,0.1,2,3\n"])
    with pytest.raises(ResultsError, match=r"line 2, column 'test_accuracy': 1.5 fails in_range\(0, 1\)"):
        read_table(path, "sweep")


@pytest.mark.parametrize("text, message", [
    ('{"method": "ht-all", "steps": 3', "not valid JSON"),
    ('[1, 2]', "holds a list, not a run's result"),
    ('{"method": "ht-all", "steps": 3, "test_accuracy": "0.8", "ci95": 0.01, "wall_seconds": 1}',
     "field 'test_accuracy' is '0.8', not a float"),
    ('{"method": "ht-all", "test_accuracy": 0.8, "ci95": 0.01, "wall_seconds": 1}', "field 'steps' is missing"),
    ('{"method": "ht-all", "steps": 3, "test_accuracy": 80, "ci95": 0.01, "wall_seconds": 1}', "not in \\[0, 1\\]"),
])
def test_a_damaged_result_names_its_file_and_field(tmp_path, text, message):
    path = tmp_path / "result.json"
    path.write_text(text)
    with pytest.raises(ResultsError, match=message):
        read_result(path)


def test_the_readme_is_not_rewritten_from_a_damaged_table(tmp_path, capsys, monkeypatch):
    """`make readme` on a copy of the project whose sweep table has a duplicated row: one line, exit 2,
    README.md untouched."""
    from htlib.cli import main

    copy = tmp_path / "project"
    shutil.copytree(ROOT / "results", copy / "results", ignore=shutil.ignore_patterns("*.pt"))
    for name in ("README.md",):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "docs", copy / "docs")
    table = copy / "results" / SWEEP.name
    lines = table.read_text().splitlines(keepends=True)
    table.write_text("".join(lines + [lines[1]]))
    before = (copy / "README.md").read_bytes()
    monkeypatch.setattr("htlib.tools.readme.PROJECT_ROOT", copy)
    assert main(["readme"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sweep_quick_omniglot.csv: lines 2, " in err and len(err.splitlines()) == 1
    assert (copy / "README.md").read_bytes() == before
    table.write_text("".join(lines))  # repaired: the README is computed from it again
    assert main(["readme"]) == 0 and main(["readme", "--check"]) == 0


@pytest.mark.parametrize("edit, message", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: text.replace('"channels": 4', '"channels": "4"'), "channels must be a whole number >= 1, got '4'"),
    (lambda text: text.replace('"steps": 4', '"steps": "4"'), "steps must be a whole number >= 1, got '4'"),
    (lambda text: text.replace('"seed": 0', '"sead": 0'), r"unknown fields \['sead'\]"),
], ids=["cut", "channels", "steps", "renamed"])
def test_a_damaged_run_config_names_its_file_and_field(tmp_path, capsys, edit, message):
    """A finished run whose config.json was damaged: loading it, or training into its folder, is one
    line that names the file (formerly a JSONDecodeError traceback, or an error about model_options)."""
    from htlib.cli import main

    task = ["--dataset", "synthetic", "--profile", "ci", "--steps", "4", "--ways", "5", "--channels", "4",
            "--transformer-layers", "1", "--device", "cpu", "--no-progress"]
    assert main(["train", *task, "--run-dir", str(tmp_path)]) == 0
    config = tmp_path / "config.json"
    config.write_text(edit(config.read_text()))
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "model.pt"), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
