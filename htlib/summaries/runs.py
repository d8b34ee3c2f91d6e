"""The single runs (notebook 02): one run's summary, and the README's table of the methods' single
runs beside the paper's number."""

from __future__ import annotations

import pandas as pd

from htlib.methods import method_label
from htlib.report import FINDING1_BASELINES, KERNEL_VARIATION_BAND, PAPER_EPISODES, PAPER_REPORTED, SINGLE_RUNS, gaps
from htlib.summaries.text import (PAPER_NOTES, VERB, gap_text, hardware, on, one, paper_name, run_budget,
                                  run_task, md_table, wrap)


# The single runs' table: one row per method, in this order (labels: htlib.methods).
SINGLE_RUN_ORDER = tuple(SINGLE_RUNS)


def single_run_summary(result: dict, metrics: pd.DataFrame, own_share: float, variation: dict[str, float],
                       paper_accuracy: float | None) -> str:
    """Accuracy, learning curve, attention and kernel variation of one committed single run."""
    per_step = result["episodes_seen"] // max(1, result["steps"])
    acc, ci = 100 * result["test_accuracy"], 100 * result["ci95"]
    lines = [f"Numbers from the committed `{result['profile']}` run ({result['method']}, "
             f"{result['ways']}-way {result['shots']}-shot {result['dataset']}, C = {result['channels']}, "
             f"seed {result['seed']}): {result['steps']:,} steps × {per_step} episodes = "
             f"{result['episodes_seen']:,} training episodes, {result['wall_seconds']:,.0f} s on {result['device']}.",
             ""]
    paper = (f", against {paper_accuracy}% in the paper after {PAPER_EPISODES:,} training episodes "
             f"({result['episodes_seen'] / PAPER_EPISODES:.1%} of them here)" if paper_accuracy else "")
    lines.append(f"* **Accuracy:** {acc:.2f}% ± {ci:.2f}% over {result['test_episodes']} test episodes{paper}.")
    val = metrics.dropna(subset=["val_accuracy"]) if "val_accuracy" in metrics else pd.DataFrame()
    if len(val) >= 4:
        late = val[val["step"] >= val["step"].max() * 3 / 4]
        rise = 100 * (late["val_accuracy"].iloc[-1] - late["val_accuracy"].iloc[0])
        lines.append(f"* **Learning curve:** validation accuracy changed by {rise:+.1f} points over the last "
                     f"quarter of training ({late['step'].iloc[0]:,} to {late['step'].iloc[-1]:,} steps).")
    ways = result["ways"]
    direction = ("more than uniform, so the map is a diagonal, not the paper's stairway" if own_share > 1 / ways
                 else "less than uniform, the paper's stairway")
    lines.append(f"* **Attention:** a logits placeholder puts {own_share:.0%} of its attention over the "
                 f"labelled samples on its own class's samples (uniform: {1 / ways:.0%}): {direction}.")
    if variation:
        low, high = min(variation.values()), max(variation.values())
        band = ("below" if high < KERNEL_VARIATION_BAND[0] else "above" if low > KERNEL_VARIATION_BAND[1]
                else "about")
        lines.append(f"* **Kernels:** the generated conv layers lie {100 * low:.1f}-{100 * high:.1f}% from their "
                     f"mean over tasks ({band} the paper's 10-15%).")
    return "\n".join(lines)


def single_runs_section(runs: dict[str, dict], paper_test_tasks: int) -> str:
    """The single runs of notebook 02 beside the paper's number, and what their gaps say."""
    order = [m for m in SINGLE_RUN_ORDER if m in runs] + sorted(m for m in runs if m not in SINGLE_RUN_ORDER)
    first = runs[order[0]]
    best = max(r["test_accuracy"] for r in runs.values())
    rows = []
    for method in order:
        r = runs[method]
        same = method != order[0] and run_task(r) == run_task(first) and run_budget(r) == run_budget(first)
        accuracy = f"{100 * r['test_accuracy']:.2f}% ± {100 * r['ci95']:.2f}%"
        rows.append([f"{method_label(method)}, "
                     + ("same task and budget" if same else run_task(r)), f"`{r['profile']}`",
                     f"**{accuracy}**" if r["test_accuracy"] == best else accuracy, str(r["test_episodes"]),
                     (f"{r['episodes_seen']:,} episodes" if same
                      else f"{run_budget(r)} = {r['episodes_seen']:,} episodes"),
                     f"{hardware(r['device'])}, {r['wall_seconds']:,.0f} s"])
    paper = PAPER_REPORTED.get((first["dataset"], first["ways"], first["shots"]), {})
    if "HT (paper)" in paper:
        rows.append([f"paper ({PAPER_NOTES}), HT on the same task", f"{PAPER_EPISODES / 1e6:g}M single-episode steps",
                     f"{paper['HT (paper)']}%", f"{paper_test_tasks} (no CI)", f"{PAPER_EPISODES:,} episodes", ""])
    table = md_table(["run", "profile", "test accuracy (95% CI)", "test episodes", "training", "hardware, wall time"],
                      rows)
    return "\n".join(table + ["", wrap(_single_runs_prose(runs, paper))])


def _single_runs_prose(runs: dict[str, dict], paper: dict) -> str:
    table = pd.DataFrame(runs.values())
    text = (f"All `{one(table.profile, 'profile')}` rows are scored on the same "
            f"{one(table.test_episodes, 'test episodes')} test episodes (fixed seed), one training seed each.")
    g = gaps(table, "ht-all", tuple(m for m in FINDING1_BASELINES if m in runs)).set_index("versus")
    if g.empty:
        return text
    point = "already point" if g.verdict.eq("better").all() else "do not all point"
    parts = []
    for other, what in (("ht-logits", "generating the logits layer only"), ("protonet", "ProtoNet's fixed embedding")):
        if other in g.index:
            parts.append(f"{VERB[g.loc[other].verdict]} {what} ({gap_text(g.loc[other])} points)")
    text += (f" At this one size (C={one(table.channels, 'C')}, {one(table.shots, 'shots')}-shot) they {point} "
             f"the paper's way: generating every layer {' and '.join(parts)}")
    maml = [label for label in paper if label.startswith("MAML++")]
    if "maml" in runs and runs["maml"]["test_accuracy"] == table.test_accuracy.min():
        text += "; MAML with this tiny CNN learns slowly at this budget"
        if maml:
            text += (f" (the paper's {paper_name(maml[0])} reaches {paper[maml[0]]}% after far longer "
                     f"training)")
    return text + "."


def budget_section(runs: dict[str, dict]) -> str:
    """How much of the paper's training the single HT run saw."""
    r = runs["ht-all"]
    hardware = "a CPU" if r["device"] == "cpu" else on(r["device"])
    return wrap(f"The `{r['profile']}` run sees {r['episodes_seen'] / PAPER_EPISODES:.1%} of the paper's training "
                f"episodes; its learning curve (notebook 02, `results/runs/{r['profile']}/...`) is still rising "
                f"slowly at the end. It shows that the method learns on {hardware}, not the paper's final number.")
