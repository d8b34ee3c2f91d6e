"""Sweep reports: the verdicts follow the numbers, in both directions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest

from htlib.plots import sweep_accuracy
from htlib.report import accuracy_grid, gaps, paper_reference, unlabelled_gains, wall_time


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


def test_unlabelled_gains_are_against_u_0_of_the_same_arm():
    table = _semi([("ht-all", 0, 0, 0, 0.80), ("ht-all", 0, 5, 0, 0.70), ("ht-all", 5, 0, 0, 0.80),
                   ("ht-all", 5, 5, 0, 0.85), ("ht-all", 5, 5, 5, 0.84)])
    g = unlabelled_gains(table).set_index(["train_unlabelled", "test_unlabelled"])
    assert g.loc[(5, 5), "verdict"] == "better" and g.loc[(0, 5), "verdict"] == "worse"
    assert g.loc[(5, 5), "gap"] == pytest.approx(0.05)


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


# ---- notebook 05: headline table and findings ----

def _status(report: pd.DataFrame, finding: int) -> str:
    rows = report[report["finding"] == finding]
    assert len(rows) == 1
    return rows["status"].iloc[0]


def _report(sweeps=None, semi=None, own_share=None, variation=None, ways=20):
    from htlib.report import STATUSES, findings

    report = findings(sweeps or {}, pd.DataFrame() if semi is None else semi, own_share, variation, "quick", ways)
    assert list(report.columns) == ["finding", "evidence", "status"]
    assert set(report["finding"]) == {1, 2, 3, 4, 5} and set(report["status"]) <= set(STATUSES)
    return report


def _sweep(small_logits, small_proto, large_logits=0.70, large_proto=0.70):
    """HT-all at 0.60 (C = 4) and 0.70 (C = 64), the baselines at the given accuracies; CIs 0.01."""
    return _table([("ht-all", 4, 0, 0.60, 0.01), ("ht-logits", 4, 0, small_logits, 0.01),
                   ("protonet", 4, 0, small_proto, 0.01), ("ht-all", 64, 0, 0.70, 0.01),
                   ("ht-logits", 64, 0, large_logits, 0.01), ("protonet", 64, 0, large_proto, 0.01)])


@pytest.mark.parametrize("small_logits, small_proto, large_logits, falls, status", [
    (0.50, 0.50, 0.70, True, "reproduced"),        # HT-all wins both at C = 4 (+10), gaps fall to 0 at C = 64
    (0.50, 0.50, 0.50, False, "partly"),           # wins both, but the gap to HT-logits grows (+10 -> +20)
    (0.50, 0.595, 0.70, True, "partly"),           # wins against HT-logits only (+0.5 is within the CI)
    (0.65, 0.70, 0.70, False, "not reproduced"),   # loses against both at C = 4 (-5, -10), then ties
    (0.65, 0.595, 0.80, True, "not reproduced"),   # wins against neither (-5, +0.5), though the gaps fall
])
def test_finding_1_follows_the_gaps_at_the_smallest_c(small_logits, small_proto, large_logits, falls, status):
    report = _report({"quick": _sweep(small_logits, small_proto, large_logits)})
    assert _status(report, 1) == status
    evidence = report.loc[report["finding"] == 1, "evidence"].iloc[0]
    assert evidence.startswith("quick sweep, smallest C = 4: 1-shot vs ht-logits: ")
    assert f"{100 * (0.60 - small_logits):+.1f} ± 1.4; 1-shot vs protonet: {100 * (0.60 - small_proto):+.1f}" in evidence
    assert evidence.endswith("the gaps fall as C grows" if falls else "the gaps do not all fall as C grows")


def test_finding_1_has_a_row_per_sweep_and_says_when_nothing_measures_it():
    both = _report({"quick": _sweep(0.65, 0.70), "long": _sweep(0.50, 0.50)})
    assert both.loc[both["finding"] == 1, "status"].tolist() == ["not reproduced", "reproduced"]
    assert _status(_report(), 1) == "not measured"
    only_ht = _report({"quick": _table([("ht-all", 4, 0, 0.6, 0.01), ("ht-all", 8, 0, 0.7, 0.01)])})
    assert _status(only_ht, 1) == "not measured"


def test_finding_2_needs_a_significant_gain_of_the_arm_trained_with_unlabelled_samples():
    base = [("ht-all", 5, 0, 0, 0.80), ("ht-all", 0, 0, 0, 0.80), ("ht-all", 0, 2, 0, 0.90)]  # control gains: ignored
    gain = _report(semi=_semi(base + [("ht-all", 5, 2, 0, 0.85), ("ht-all", 5, 5, 0, 0.81)]))
    assert _status(gain, 2) == "reproduced"
    assert "U = 5, best change against U = 0 at test: +5.0 ± 1.4 points (U = 2)" in gain["evidence"].iloc[1]
    no_gain = _report(semi=_semi(base + [("ht-all", 5, 2, 0, 0.81)]))
    assert _status(no_gain, 2) == "not reproduced"
    assert _status(_report(), 2) == "not measured"
    assert _status(_report(semi=_semi([("protonet-softkmeans", 0, 0, 0, 0.7)])), 2) == "not measured"


def test_finding_3_is_not_measured():
    assert _status(_report(), 3) == "not measured"


@pytest.mark.parametrize("own_share, status", [
    (0.02, "reproduced"), (0.05, "not reproduced (own class preferred)"),
    (0.714, "not reproduced (own class preferred)"), (None, "not measured")])
def test_finding_4_compares_the_own_class_share_with_uniform(own_share, status):
    report = _report(own_share=own_share, ways=20)  # uniform: 5%
    assert _status(report, 4) == status
    if own_share is not None:
        assert f"{own_share:.1%} of a placeholder's attention on its own class (uniform 5.0%)" in report["evidence"][3]


@pytest.mark.parametrize("variation, status", [
    ({"conv0": 0.10, "conv1": 0.20}, "reproduced"), ({"conv0": 0.05}, "reproduced"), ({"conv0": 0.25}, "reproduced"),
    ({"conv0": 0.008, "conv1": 0.016}, "smaller than the paper's"), ({"conv0": 0.049}, "smaller than the paper's"),
    ({"conv0": 0.2, "conv1": 0.4}, "larger than the paper's"), (None, "not measured"), ({}, "not measured")])
def test_finding_5_places_the_mean_kernel_variation_against_the_band(variation, status):
    from htlib.report import KERNEL_VARIATION_BAND

    assert KERNEL_VARIATION_BAND == (0.05, 0.25)
    report = _report(variation=variation)
    assert _status(report, 5) == status
    if variation:
        mean = sum(variation.values()) / len(variation)
        assert f"vary by {mean:.1%} on average across 32 tasks" in report["evidence"][4]


def test_headline_table_sets_paper_numbers_beside_ours_with_their_share_of_its_training():
    from htlib.report import PAPER_EPISODES, headline_table

    singles = {"HT, all layers": {"test_accuracy": 0.807, "ci95": 0.0056, "episodes_seen": 48000}, "MAML": None}
    sweep = _table([("ht-all", 4, 0, 0.60, 0.01), ("ht-all", 16, 0, 0.75, 0.006), ("protonet", 16, 0, 0.9, 0.01)])
    sweep["episodes_seen"] = 16000
    one_shot = {"split_scheme": "paper", "shots": 1, "init": None, "tests": {1: (0.892, 0.003, 3_000_000),
                                                                            5: (0.937, 0.002, 3_000_000)}}
    tuned = {"split_scheme": "paper", "shots": 5, "init": {"best_at_episodes": 1_280_000},
             "tests": {5: (0.949, 0.002, 100_000)}}
    table = headline_table("omniglot", 20, "quick", 8, singles, {"long": sweep}, [one_shot, tuned])
    assert list(table.columns) == ["task", "source", "test protocol", "accuracy (%)", "95% CI (points)",
                                   "training episodes", "share of the paper's training"]
    assert table["source"].tolist() == ["paper: HT", "paper: MAML++, C = 64",
                                        "ours (CPU campaign, C = 8, trained at 1-shot): HT, all layers",
                                        "ours (quick single run, C = 8): HT, all layers",
                                        "ours (long sweep, best C = 16): HT, all layers",
                                        "paper: HT", "paper: MAML++, C = 64",
                                        "ours (CPU campaign, C = 8, trained at 1-shot): HT, all layers",
                                        "ours (CPU campaign, C = 8, trained at 5-shot after 1-shot): HT, all layers"]
    assert table["test protocol"].tolist() == ["paper"] * 3 + ["vinyals"] * 2 + ["paper"] * 4
    assert table["task"].tolist() == ["20-way 1-shot"] * 5 + ["20-way 5-shot"] * 4
    assert table["accuracy (%)"].tolist() == [96.2, 97.7, 89.2, 80.7, 75.0, 98.8, 99.3, 93.7, 94.9]
    assert table["95% CI (points)"].fillna(-1).tolist() == [-1, -1, 0.3, 0.6, 0.6, -1, -1, 0.2, 0.2]  # paper: none
    assert table["training episodes"].dtype == "Int64" and PAPER_EPISODES == 4_000_000
    assert table["training episodes"].tolist()[:5] == [4_000_000, pd.NA, 3_000_000, 48000, 16000]
    assert table["training episodes"].iloc[-1] == 1_380_000  # the fine-tune counts its start's episodes
    assert table["share of the paper's training"].tolist()[:5] == ["", "", "75.00%", "1.20%", "0.40%"]
    # campaigns are Omniglot 20-way: another task shows none of them
    assert "CPU campaign" not in " ".join(headline_table("omniglot", 5, "quick", 8, {}, {}, [one_shot]).source)
    # no paper numbers for this task and nothing of ours: an empty table that keeps its columns
    empty = headline_table("synthetic", 5, "ci", 4, {}, {})
    assert empty.empty and list(empty.columns) == list(table.columns)


def test_the_headline_figure_has_a_panel_per_task_and_colours_by_test_protocol():
    from htlib.plots import headline_accuracy
    from htlib.report import headline_table

    singles = {"HT, all layers": {"test_accuracy": 0.807, "ci95": 0.0056, "episodes_seen": 48000}}
    campaign = {"split_scheme": "paper", "shots": 1, "init": None, "tests": {1: (0.892, 0.003, 3_000_000)}}
    fig = headline_accuracy(headline_table("omniglot", 20, "quick", 8, singles, {}, [campaign]))
    assert [ax.get_title() for ax in fig.axes] == ["20-way 1-shot", "20-way 5-shot"]
    assert len(fig.axes[0].get_yticklabels()) == 4  # paper HT, paper MAML++, the campaign, the single run
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["tested on `paper`", "tested on `vinyals`", "the paper (no CI)"]


def test_the_sweep_figure_names_every_method_even_one_with_a_single_panel():
    table = _table([("ht-all", 4, 0, 0.6, 0.01), ("maml", 4, 0, 0.3, 0.01)])
    five = _table([("ht-all", 4, 0, 0.7, 0.01)]).assign(shots=5)  # no 5-shot maml cell, as in the long sweep
    fig = sweep_accuracy(pd.concat([table, five]))
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["ht-all", "maml"]
