"""htlib.summaries: the Markdown about committed runs is computed from the tables it is given."""

from __future__ import annotations

import pandas as pd
import pytest

from htlib.summaries import device_agreement, semi_findings, single_run_summary, sweep_findings


def _cell(method, channels, acc, ci=0.01, shots=1):
    return {"method": method, "shots": shots, "channels": channels, "seed": 0, "test_accuracy": acc, "ci95": ci,
            "steps": 100, "episodes_seen": 400, "wall_seconds": 60.0, "device": "cpu", "test_episodes": 600}


def test_sweep_findings_follow_the_gaps_in_both_directions():
    table = pd.DataFrame([_cell("ht-all", 4, 0.50), _cell("protonet", 4, 0.40),
                          _cell("ht-all", 32, 0.60), _cell("protonet", 32, 0.80)]).assign(ways=20, dataset="omniglot")
    text = sweep_findings(table, "long")
    assert "`long` (CPU, 400 training episodes per cell; chance is 5%)" in text
    assert "At C = 4 generating all layers beats ProtoNet by +10.0 ± 1.4 points (1-shot)" in text
    assert "ahead at C = 4 (+10.0) and behind at C = 32" in text
    changed = sweep_findings(table.assign(test_accuracy=[0.30, 0.40, 0.60, 0.80]), "long")
    assert "trails ProtoNet by −10.0 ± 1.4 points (1-shot)" in changed and "behind at every C" in changed
    assert "speed of learning" in sweep_findings(table, "quick", least_training=True)


def _semi_row(method, arm, u, acc, distractors=0):
    return {"method": method, "train_unlabelled": arm, "test_unlabelled": u, "test_distractors": distractors,
            "test_accuracy": acc, "ci95": 0.005, "ways": 20, "shots": 1, "dataset": "omniglot", "channels": 8,
            "seed": 0, "base_episodes": 48000, "episodes_seen": 50400, "test_episodes": 600, "device": "cpu"}


def test_semi_findings_and_the_device_check():
    rows = [_semi_row("ht-all", a, u, acc) for a, u, acc in [(0, 0, 0.80), (0, 5, 0.70), (5, 0, 0.80), (5, 5, 0.85)]]
    rows += [_semi_row("protonet-softkmeans", 0, u, acc) for u, acc in [(0, 0.70), (5, 0.75)]]
    rows.append(_semi_row("protonet-softkmeans", 0, 5, 0.72, distractors=5))
    table = pd.DataFrame(rows).assign(profile="quick")
    text = " | ".join(semi_findings(table))
    assert "its best change against U = 0 is +5.0 ± 0.7 points, at U = 5" in text
    assert "the untrained \"unlabelled\" embedding hurts: −10.0 ± 0.7 points" in text
    assert "gains +5.0 ± 0.7 points from U = 0 to U = 5 without ever being trained on unlabelled samples" in text
    assert "loses 3.0 ± 0.7 points with 5 distractor classes (at U = 5)" in text
    ht = table[table.method == "ht-all"]
    other = ht.assign(test_accuracy=[0.80, 0.70, 0.80, 0.80], device="NVIDIA H100 80GB HBM3")
    both = device_agreement(ht, other)
    assert both["within CI"].tolist() == [True, True, True, False]
    assert "agrees with the CPU numbers within the combined CIs in 3 of 4 conditions" in " ".join(
        semi_findings(ht, other, "results/gpu/x.csv"))


def test_single_run_summary_reads_accuracy_curve_attention_and_kernels():
    result = {"profile": "quick", "method": "ht-all", "ways": 20, "shots": 1, "dataset": "omniglot", "channels": 8,
              "seed": 0, "steps": 3000, "episodes_seen": 48000, "wall_seconds": 864.0, "device": "cpu",
              "test_accuracy": 0.8075, "ci95": 0.0056, "test_episodes": 600}
    metrics = pd.DataFrame({"step": [750, 1500, 2250, 3000], "val_accuracy": [0.5, 0.7, 0.80, 0.83]})
    text = single_run_summary(result, metrics, own_share=0.71, variation={"conv0": 0.012, "conv1": 0.15},
                              paper_accuracy=96.2)
    assert "3,000 steps × 16 episodes = 48,000 training episodes, 864 s on cpu" in text
    assert "80.75% ± 0.56% over 600 test episodes, against 96.2% in the paper" in text and "(1.2% of them" in text
    assert "changed by +3.0 points over the last quarter" in text
    assert "71% of its attention" in text and "not the paper's stairway" in text
    assert "1.2-15.0% from their mean over tasks (about the paper's" in text
    stairway = single_run_summary(result, metrics, own_share=0.01, variation={"conv0": 0.01}, paper_accuracy=None)
    assert "the paper's stairway" in stairway and "not the paper's" not in stairway and "below the paper's" in stairway


def test_recipe_summary_sorts_arms_by_their_computed_verdict():
    from htlib.experiments.recipe import recipe_gaps
    from htlib.summaries import recipe_summary

    def row(arm, acc):
        return {"arm": arm, "change": arm, "seed": 0, "episodes": 48000, "test_accuracy": acc, "ci95": 0.005,
                "val_accuracy": acc, "train_accuracy": acc + 0.05, "device": "cpu"}

    table = pd.DataFrame([row("baseline", 0.80), row("lr-3e-3", 0.83), row("layers-2", 0.75), row("shift-2", 0.801)])
    text = recipe_summary(table, recipe_gaps(table), arms_in_study=20)
    assert text.startswith("4 of 20 arms finished (4 runs, seeds [0])") and "the baseline scores 80.0%" in text
    assert "**Better than the baseline** (test accuracy, points): `lr-3e-3` +3.0 ± 0.7." in text
    assert "**Worse than the baseline** (test accuracy, points): `layers-2` -5.0 ± 0.7." in text
    assert "`shift-2` +0.1 ± 0.7" in text and "Changes that beat the baseline beyond their CI: `lr-3e-3` (1 seed)." in text
    assert "No committed recipe runs" in recipe_summary(table.iloc[1:], recipe_gaps(table).iloc[:0], 20)
    # a second seed: the baseline's spread is shown; gaps on the shared seeds
    table = pd.concat([table, pd.DataFrame([{**row("baseline", 0.82), "seed": 1}, {**row("lr-3e-3", 0.85), "seed": 1}])])
    text = recipe_summary(table, recipe_gaps(table), arms_in_study=20)
    assert "the baseline scores 81.0% on the test episodes (seeds 80.0%, 82.0%: the training's own noise)" in text
    assert "`lr-3e-3` +3.0 ± 0.5 (2 seeds)" in text and "beyond their CI: `lr-3e-3` (2 seeds)." in text


def test_confirmation_summary_states_the_baseline_and_each_arm_against_it():
    from htlib.experiments.recipe import recipe_gaps
    from htlib.summaries import confirmation_summary

    rows = [{"arm": arm, "change": f"{arm} change", "seed": 0, "episodes": 320000, "test_accuracy": acc,
             "ci95": 0.005, "train_accuracy": acc + 0.05, "wall_seconds": 60 * minutes, "device": "cpu"}
            for arm, acc, minutes in (("baseline", 0.84, 40), ("shift-2", 0.87, 50))]
    table = pd.DataFrame(rows)
    text = confirmation_summary(table, recipe_gaps(table), "long")
    assert text.startswith("At the `long` budget (320,000 training episodes per run, seed(s) [0], cpu) the baseline "
                           "scores **84.0% ± 0.5** on the test episodes (89.0% training accuracy")
    assert "* `shift-2` (shift-2 change): **87.0% ± 0.5**, a gap of +3.0 ± 0.7 points (better); 92.0% training " \
           "accuracy, 50 minutes." in text
    assert confirmation_summary(table.iloc[:1], recipe_gaps(table.iloc[:1]), "long").startswith(
        "Nothing to compare at `long` yet")


def test_recipe_curves_draws_one_line_per_arm_and_the_chance_levels():
    import matplotlib

    matplotlib.use("Agg")
    from htlib.plots import recipe_curves

    metrics = pd.DataFrame({"episodes": [16, 32], "loss": [3.0, 2.5], "val_accuracy": [float("nan"), 0.3]})
    fig = recipe_curves({"baseline": metrics, "lr-3e-3": metrics}, ways=20)
    loss_ax, val_ax = fig.axes
    assert len(loss_ax.lines) == 3 and len(val_ax.lines) == 3  # two arms + the chance line
    assert loss_ax.lines[-1].get_ydata()[0] == pytest.approx(2.9957, abs=1e-4)


def _campaign(**changes) -> dict:
    found = {"name": "ht-all-x", "split_scheme": "paper", "steps": 5000, "total_steps": 250000, "episodes": 80000,
             "total_episodes": 4000000, "best_val_accuracy": 0.85, "best_at_episodes": 40000, "segments": 2,
             "cpus": ["cpu A", "cpu B"], "hours": 1.25, "result": None,
             "tests": {1: (0.9012, 0.0052, 80000), 5: (0.9634, 0.002, 80000)}}
    return {**found, **changes}


def test_campaign_summary_states_budget_and_gaps_to_the_paper():
    from htlib.summaries import campaign_summary

    text = campaign_summary(_campaign())
    assert "80,000 training episodes, 2.0% of the paper's 4,000,000, in 2 segments and 1.2 CPU hours " \
           "(cpu A, cpu B), on the `paper` split" in text
    assert "Start" not in text and "(the 1-shot model given 5 support images per class)" in text
    assert "Best so far 85.0% at 40,000 episodes" in text
    assert "**Test, 1-shot** (as trained): 90.1 ± 0.5% with the best weights after 80,000 episodes, 6.1 " \
           "points below the paper's 96.2%" in text
    assert "**Test, 5-shot**" in text and "2.5 points below the paper's 98.8%" in text
    fresh = campaign_summary(_campaign(tests={}, best_val_accuracy=None, segments=1, cpus=[], episodes=0))
    assert "No test yet" in fresh and "in 1 segment and" in fresh and "()" not in fresh and "Validation" not in fresh
    tuned = campaign_summary(_campaign(shots=5, init={"from": "one-shot-run", "trained_episodes": 1_000_000,
                                                      "best_at_episodes": 960_000, "best_val_accuracy": 0.88}))
    assert ("**Start.** The best weights of `one-shot-run` after 1,000,000 episodes (best at 960,000, validation "
            "88.0% at 1 shot), fine-tuned at 5 shots.") in tuned
    assert "80,000 fine-tuning episodes" in tuned
    assert "**Test, 5-shot** (as trained)" in tuned and "(the 5-shot model given 1 support image per class)" in tuned


def test_campaign_curve_shows_tests_and_the_paper_on_a_log_axis():
    import matplotlib

    matplotlib.use("Agg")
    from htlib.plots import campaign_curve

    metrics = pd.DataFrame({"episodes": [16000, 32000, 48000], "accuracy": [0.5, 0.7, 0.8],
                            "val_accuracy": [float("nan"), 0.6, 0.75]})
    tests = pd.DataFrame({"episodes": [48000, 48000], "shots": [1, 5], "test_accuracy": [0.7, 0.8], "ci95": [0.01] * 2})
    fig = campaign_curve(metrics, tests, {1: 96.2, 5: 98.8}, 4_000_000)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_xlim()[1] > 4_000_000
    dashed = sorted(line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--")
    assert dashed == pytest.approx([0.962, 0.988])
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"test, 1-shot (best weights)",
                                                                  "test, 5-shot (best weights)"}


def test_fidelity_summary_names_the_sgd_arms_that_stay_at_chance_and_the_part_that_stalls_sgd():
    from htlib.summaries import fidelity_summary

    def row(arm, acc):  # the SGD arms and reference-all train on a quarter of the baseline's episodes
        quarter = arm.startswith("sgd") or arm == "reference-all"
        return {"arm": arm, "change": arm, "seed": 0, "episodes": 12000 if quarter else 48000, "test_accuracy": acc,
                "ci95": 0.003}

    learns = [row("baseline", 0.80), row("sgd-reference", 0.17), row("sgd-glorot", 0.15), row("reference-all", 0.06)]
    text = fidelity_summary({"vinyals": pd.DataFrame(learns + [row("sgd+no-normalize", 0.05),
                                                               row("sgd+bn-eps-1e-3", 0.16)])}, "quick", ways=20)
    assert ("leave chance: `sgd-reference` 17.0%, `sgd-glorot` 15.0%, `sgd+bn-eps-1e-3` 16.0%; stay at it (under "
            "twice chance): `reference-all` 6.0%, `sgd+no-normalize` 5.0%") in text
    assert "(3 measured): `no-normalize` keeps it at chance, the others do not." in text
    alone = fidelity_summary({"paper": pd.DataFrame(learns)}, "quick", ways=20)
    assert "(1 measured): none keeps it at chance: the stall of `reference-all` needs several of them" in alone
    two = fidelity_summary({"paper": pd.DataFrame(learns + [row("sgd+no-tie-logits", 0.05),
                                                             row("sgd+no-match-qk", 0.05)])}, "quick")
    assert "`no-tie-logits` and `no-match-qk` each keep it at chance" in two
    assert "Plain SGD" not in fidelity_summary({"paper": pd.DataFrame([row("baseline", 0.8)])}, "quick")
    # chance is 1/N: at 5-way 15% is under twice chance
    assert "chance 20.0%): leave chance: none; stay at it" in fidelity_summary(
        {"paper": pd.DataFrame(learns)}, "quick", ways=5)


def test_fidelity_budget_lists_each_protocols_baseline_by_budget_and_steps_on_shared_seeds():
    from htlib.summaries import fidelity_budget

    def table(episodes, *accuracies, arm="baseline"):
        return pd.DataFrame([{"arm": arm, "seed": seed, "episodes": episodes, "test_accuracy": acc, "ci95": 0.005}
                             for seed, acc in enumerate(accuracies)])

    quick = {"paper": table(48000, 0.84, 0.85), "vinyals": table(48000, 0.80)}
    long = {"paper": table(320000, 0.88)}
    # given longest first, still listed fewest episodes first; the step compares seed 0 with seed 0
    text = fidelity_budget({"long": long, "quick": quick})
    assert text == ("* **Budget on `paper`.** Today's model and recipe (the baseline) score 84.5% at `quick` "
                    "(48,000 episodes, 2 seeds), then 88.0% at `long` (320,000 episodes, 1 seed; +4.0 ± 0.7 points "
                    "over `quick` on the seeds both have).")
    # vinyals has one budget only; a table without a baseline row does not count as a budget
    assert fidelity_budget({"quick": quick, "long": {"paper": table(320000, 0.9, arm="reference-model")}}) is None
    assert fidelity_budget({}) is None
