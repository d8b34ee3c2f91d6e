"""Sweeps: one tidy row per cell, finished cells are skipped, nothing is lost."""

from __future__ import annotations

import pandas as pd
import pytest

from htlib import sweep as sweep_module
from htlib.sweep import COLUMNS, SweepSpec, run_sweep


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run directories and tables under tmp_path instead of the project."""
    monkeypatch.setattr(sweep_module, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr("htlib.data.paths.PROJECT_ROOT", tmp_path)


pytestmark = pytest.mark.usefixtures("single_thread")


def test_sweep_writes_one_row_per_cell_and_skips_done_cells(tmp_path, capsys):
    spec = SweepSpec(profile="ci", dataset="synthetic", ways=3, shots=[1], channels=[4, 6],
                     methods=["protonet", "ht-logits"])
    table = run_sweep(spec, progress=False)
    assert list(table.columns) == COLUMNS and len(table) == 4
    assert set(table["method"]) == {"protonet", "ht-logits"} and set(table["channels"]) == {4, 6}
    assert table["test_accuracy"].between(0, 1).all() and (table["test_episodes"] > 0).all()
    stored = pd.read_csv(spec.table_path)
    assert len(stored) == 4 and spec.table_path.parent.name == "runs"  # ci tables stay out of results/
    capsys.readouterr()
    again = run_sweep(spec, progress=False)
    assert capsys.readouterr().out.count("skipped") == 4
    pd.testing.assert_frame_equal(again, table)


def test_a_cell_trained_with_other_settings_is_not_reused(monkeypatch):
    spec = SweepSpec(profile="ci", dataset="synthetic", ways=3, shots=[1], channels=[4], methods=["protonet"])
    run_sweep(spec, progress=False)
    from htlib.profiles import PROFILES

    monkeypatch.setitem(PROFILES, "ci", PROFILES["ci"].__class__(**{**PROFILES["ci"].__dict__, "sweep_steps": 5}))
    with pytest.raises(ValueError, match="other settings.*steps"):
        run_sweep(spec, progress=False)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="Unknown methods"):
        SweepSpec(methods=["resnet"]).cells()
