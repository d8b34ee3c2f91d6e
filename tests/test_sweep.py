"""Sweeps: one tidy row per cell, finished cells are skipped, nothing is lost."""

from __future__ import annotations

import pandas as pd
import pytest

from htlib.errors import ConfigError
from htlib.experiments.sweep import COLUMNS, SweepSpec, run_sweep


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run folders and tables under tmp_path instead of the project (htlib.runs is the one place)."""
    monkeypatch.setattr("htlib.runs.RESULTS_ROOT", tmp_path)


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
    from htlib.experiments.sweep import SWEEP_BUDGETS
    from htlib.profiles import Budget

    monkeypatch.setitem(SWEEP_BUDGETS, "ci", Budget(5, 2))
    with pytest.raises(ValueError, match="other settings.*steps"):
        run_sweep(spec, progress=False)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="Unknown method 'resnet'"):
        SweepSpec(methods=["resnet"]).cells()


def test_two_workers_train_the_same_cells_as_one(tmp_path):
    """Cells trained in worker processes give the same rows as cells trained in order."""
    spec = SweepSpec(profile="ci", dataset="synthetic", ways=3, shots=[1], channels=[4, 6], methods=["protonet"])
    parallel = run_sweep(spec, progress=False, workers=2)
    assert len(parallel) == 2
    for run_dir in spec.table_path.parent.glob("ci-sweep/*"):
        (run_dir / "result.json").unlink()
    serial = run_sweep(spec, progress=False)
    same = ["method", "channels", "test_accuracy", "trainable_params"]
    pd.testing.assert_frame_equal(parallel[same], serial[same])


def test_time_limit_leaves_cells_for_the_next_call(capsys):
    spec = SweepSpec(profile="ci", dataset="synthetic", ways=3, shots=[1], channels=[4, 6], methods=["protonet"])
    assert run_sweep(spec, progress=False, max_minutes=0).empty
    assert "2 of 2 cells not trained" in capsys.readouterr().out
    assert len(run_sweep(spec, progress=False)) == 2


def test_maml_variants_carry_their_own_names():
    spec = SweepSpec(profile="ci", channels=[4], shots=[1], methods=["maml", "fomaml", "fomaml-1step"])
    assert [c.config.method for c in spec.cells()] == ["maml", "fomaml", "fomaml-1step"]
    assert [c.config.model_options for c in spec.cells()] == [{}, {}, {}]  # the name says it all
    assert [c.folder.name.split("-omniglot")[0] for c in spec.cells()] == ["maml", "fomaml", "fomaml-1step"]
    # the default methods take the profile's MAML variant
    assert {c.config.method for c in SweepSpec(profile="long").cells()} == {"ht-all", "ht-logits",
                                                                                  "protonet", "maml"}


def test_a_profile_without_a_sweep_budget_is_named_not_run_at_zero_steps():
    """Profiles say how much one run computes; the sweep keeps its own budget per profile."""
    with pytest.raises(ConfigError, match="The sweep has no budget at profile 'campaign'; choose one of"):
        SweepSpec(profile="campaign").cells()
    assert SweepSpec(profile="quick").budget.episodes == 1_200
