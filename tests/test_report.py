"""Sweep reports: the verdicts follow the numbers, in both directions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest

from htlib.plots import sweep_accuracy
from htlib.report import (accuracy_grid, gaps, paper_reference, semi_verdicts, unlabelled_gains, verdicts,
                          wall_time)


def _table(rows):
    return pd.DataFrame([{"method": m, "shots": 1, "channels": c, "seed": s, "test_accuracy": a, "ci95": ci,
                          "wall_seconds": 60.0, "device": "cpu"} for m, c, s, a, ci in rows])


def test_gap_is_better_only_when_its_ci_excludes_zero():
    table = _table([("ht-all", 4, 0, 0.60, 0.01), ("ht-logits", 4, 0, 0.50, 0.01), ("protonet", 4, 0, 0.595, 0.01),
                    ("ht-all", 64, 0, 0.70, 0.01), ("ht-logits", 64, 0, 0.75, 0.01), ("protonet", 64, 0, 0.70, 0.01)])
    g = gaps(table).set_index(["channels", "versus"])
    assert g.loc[(4, "ht-logits"), "verdict"] == "better"
    assert g.loc[(4, "ht-logits"), "gap"] == pytest.approx(0.10)
    assert g.loc[(4, "ht-logits"), "ci95"] == pytest.approx(0.01 * 2 ** 0.5)
    assert g.loc[(4, "protonet"), "verdict"] == "no clear difference"
    assert g.loc[(64, "ht-logits"), "verdict"] == "worse"
    text = verdicts(table)
    assert any("ht-logits" in line and "+10.0" in line and "falls" in line for line in text)
    assert any("protonet" in line and "does not change beyond the noise" in line for line in text)


def test_seeds_are_averaged_with_a_narrower_ci():
    table = _table([("ht-all", 4, 0, 0.60, 0.02), ("ht-all", 4, 1, 0.70, 0.02)])
    grid = accuracy_grid(table)
    assert grid.loc[(1, "ht-all"), "C=4"] == "65.0 ± 1.4"


def test_empty_table_says_what_to_do():
    with pytest.raises(ValueError, match="train some cells first"):
        accuracy_grid(_table([]).reindex(columns=["method", "shots", "channels", "test_accuracy", "ci95"]))


def test_paper_reference_and_wall_time_and_plot():
    assert paper_reference("omniglot", 20).loc[1, "HT (paper)"] == 96.2
    assert paper_reference("miniimagenet", 20).empty
    table = _table([("ht-all", 4, 0, 0.6, 0.01), ("protonet", 4, 0, 0.5, 0.01), ("protonet", 8, 0, 0.55, 0.01)])
    assert wall_time(table).set_index("method").loc["protonet", "minutes"] == 2.0
    fig = sweep_accuracy(table)
    assert len(fig.axes[0].get_lines()) > 0


def _semi(rows):
    return pd.DataFrame([{"method": m, "train_unlabelled": a, "test_unlabelled": u, "test_distractors": d,
                          "test_accuracy": acc, "ci95": 0.01} for m, a, u, d, acc in rows])


def test_semi_verdicts_separate_gain_arm_effect_and_distractors():
    table = _semi([("ht-all", 0, 0, 0, 0.80), ("ht-all", 0, 5, 0, 0.70), ("ht-all", 5, 0, 0, 0.80),
                   ("ht-all", 5, 5, 0, 0.85), ("ht-all", 5, 5, 5, 0.84)])
    g = unlabelled_gains(table).set_index(["train_unlabelled", "test_unlabelled"])
    assert g.loc[(5, 5), "verdict"] == "better" and g.loc[(0, 5), "verdict"] == "worse"
    assert g.loc[(5, 5), "gap"] == pytest.approx(0.05)
    text = " | ".join(semi_verdicts(table))
    assert "trained with U = 5 minus the control is +15.0" in text
    assert "5 distractor classes at U_test = 5 change accuracy by -1.0" in text and "(no clear difference)" in text


def test_semi_plot_draws_one_panel_per_method():
    from htlib.plots import semi_accuracy

    table = _semi([("ht-all", 0, 0, 0, 0.8), ("ht-all", 5, 0, 0, 0.8), ("ht-all", 5, 5, 5, 0.8),
                   ("protonet-softkmeans", 0, 0, 0, 0.7)])
    assert len(semi_accuracy(table).axes) == 2


def test_attention_and_kernel_statistics_of_an_ht():
    import torch

    from htlib.models import CNNSpec, HTConfig, HyperTransformer
    from htlib.report import kernel_variation, own_class_attention

    torch.manual_seed(0)
    ht = HyperTransformer(HTConfig(cnn=CNNSpec(channels=4), max_ways=3)).eval()
    x = torch.randn(5, 3, 1, 28, 28)
    y = torch.tensor([0, 1, 2]).repeat(5, 1)
    share = own_class_attention(ht, x, y, 3)
    assert 0.0 < share < 1.0
    variation = kernel_variation(ht, x, y, 3)
    assert set(variation) == {"conv0", "conv1", "conv2", "conv3"} and all(v > 0 for v in variation.values())
    # identical tasks: the generated kernels do not vary at all
    same = kernel_variation(ht, x[:1].expand(5, -1, -1, -1, -1), y, 3)
    assert max(same.values()) < 1e-5
