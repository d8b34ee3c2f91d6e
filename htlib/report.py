"""Turn sweep tables into the comparisons a reader needs: accuracy grids, gaps with their CIs,
and plain verdicts on the paper's claim (generating all layers beats generating the logits only,
and beats a fixed embedding, for small CNNs; the advantage fades as C grows).

Verdicts are computed, never written by hand, so they stay true for whatever table is given.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

# Headline accuracies (%) the paper reports (PAPER.md), keyed by (dataset, ways, shots).
# The paper's HT numbers come from 4M single-episode training steps.
PAPER_REPORTED = {
    ("omniglot", 20, 1): {"HT (paper)": 96.2, "MAML++, C = 64 (paper)": 97.7},
    ("omniglot", 20, 5): {"HT (paper)": 98.8, "MAML++, C = 64 (paper)": 99.3},
}


def accuracy_grid(table: pd.DataFrame) -> pd.DataFrame:
    """'mean ± ci95' in % for every (shots, method) row and channel column (seeds averaged)."""
    rows = _per_cell(table)
    rows["cell"] = [f"{100 * a:.1f} ± {100 * c:.1f}" for a, c in zip(rows.test_accuracy, rows.ci95)]
    grid = rows.pivot(index=["shots", "method"], columns="channels", values="cell")
    grid.columns = [f"C={c}" for c in grid.columns]
    return grid


def gaps(table: pd.DataFrame, method: str = "ht-all", others: tuple[str, ...] = ("ht-logits", "protonet")):
    """Accuracy of `method` minus each of `others`, per (shots, channels), with a 95% CI.

    The CI treats the two accuracies as independent (sqrt of the summed squared half-widths).
    Every method is tested on the same episodes, so a paired CI would be narrower: this one is
    conservative. verdict: 'better' / 'worse' when the CI excludes 0, else 'no clear difference'.
    """
    cells = _per_cell(table).set_index(["shots", "channels", "method"])
    out = []
    for shots, channels in cells.index.droplevel("method").unique():
        if (shots, channels, method) not in cells.index:
            continue
        a = cells.loc[(shots, channels, method)]
        for other in others:
            if (shots, channels, other) not in cells.index:
                continue
            b = cells.loc[(shots, channels, other)]
            out.append({"shots": shots, "channels": channels, "versus": other, **_difference(a, b)})
    return pd.DataFrame(out, columns=["shots", "channels", "versus", "gap", "ci95", "verdict"])


def verdicts(table: pd.DataFrame, method: str = "ht-all",
             others: tuple[str, ...] = ("ht-logits", "protonet")) -> list[str]:
    """Plain sentences on the two parts of the claim, for each shot count in the table."""
    g = gaps(table, method, others)
    lines = []
    for (shots, other), rows in g.groupby(["shots", "versus"]):
        rows = rows.sort_values("channels")
        small, large = rows.iloc[0], rows.iloc[-1]
        lines.append(
            f"{shots}-shot, {method} vs {other}: at the smallest C = {small.channels} the gap is "
            f"{100 * small.gap:+.1f} ± {100 * small.ci95:.1f} points ({small.verdict})"
            + ("" if len(rows) == 1 else
               f"; at the largest C = {large.channels} it is {100 * large.gap:+.1f} ± {100 * large.ci95:.1f} "
               f"({large.verdict}); from the smallest to the largest C the gap "
               f"{_trend(small.gap, large.gap, small.ci95, large.ci95)}."))
    return lines


def _trend(first: float, last: float, ci_first: float, ci_last: float) -> str:
    if abs(first - last) <= math.hypot(ci_first, ci_last):
        return "does not change beyond the noise"
    return "falls" if last < first else "rises"


def wall_time(table: pd.DataFrame) -> pd.DataFrame:
    """Training + test wall time per method and device, in minutes, and the total."""
    per = table.groupby(["device", "method"])["wall_seconds"].sum().div(60).round(1).rename("minutes")
    return per.reset_index()


def paper_reference(dataset: str, ways: int) -> pd.DataFrame:
    """The paper's headline numbers for this task, one row per shot count (empty if none)."""
    rows = [{"shots": shots, **numbers} for (d, w, shots), numbers in PAPER_REPORTED.items()
            if d == dataset and w == ways]
    return pd.DataFrame(rows).set_index("shots") if rows else pd.DataFrame()


def _per_cell(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (shots, channels, method): seeds averaged, CIs combined as for a mean."""
    if table.empty:
        raise ValueError("The sweep table is empty: train some cells first (htlib.sweep.run_sweep).")
    grouped = table.groupby(["shots", "channels", "method"])
    out = grouped["test_accuracy"].mean().to_frame()
    # the mean of n independent estimates has a CI of sqrt(sum ci^2) / n
    out["ci95"] = grouped["ci95"].apply(lambda c: math.sqrt((c ** 2).sum()) / len(c))
    return out.reset_index()


def _difference(a: pd.Series, b: pd.Series) -> dict:
    diff, ci = a.test_accuracy - b.test_accuracy, math.hypot(a.ci95, b.ci95)
    verdict = "better" if diff - ci > 0 else "worse" if diff + ci < 0 else "no clear difference"
    return {"gap": diff, "ci95": ci, "verdict": verdict}


def unlabelled_gains(table: pd.DataFrame) -> pd.DataFrame:
    """Semi-supervised table -> accuracy at each U_test minus accuracy at U_test = 0, per method and
    training arm (no distractors), with a 95% CI (independent-samples, as in `gaps`)."""
    clean = table[table["test_distractors"] == 0].set_index(["method", "train_unlabelled", "test_unlabelled"])
    out = []
    for (method, arm), rows in clean.groupby(level=["method", "train_unlabelled"]):
        if (method, arm, 0) not in rows.index:
            continue
        zero = rows.loc[(method, arm, 0)]
        for (_, _, u), row in rows.iterrows():
            if u > 0:
                out.append({"method": method, "train_unlabelled": arm, "test_unlabelled": u,
                            **_difference(row, zero)})
    return pd.DataFrame(out, columns=["method", "train_unlabelled", "test_unlabelled", "gap", "ci95", "verdict"])


def semi_verdicts(table: pd.DataFrame) -> list[str]:
    """Plain sentences: does each method gain from unlabelled samples, and does training with them
    (against the control arm trained as long without) matter?"""
    gains = unlabelled_gains(table)
    rows = table.set_index(["method", "train_unlabelled", "test_unlabelled", "test_distractors"])
    lines = []
    for method in sorted(table["method"].unique()):
        arms = sorted(table.loc[table["method"] == method, "train_unlabelled"].unique())
        for arm in arms:
            g = gains[(gains["method"] == method) & (gains["train_unlabelled"] == arm)]
            if g.empty:
                continue
            best = g.loc[g["gap"].idxmax()]
            name = "trained with" if arm else "control, trained with"
            lines.append(f"{method} ({name} U = {arm}): the best change against U_test = 0 is "
                         f"{100 * best.gap:+.1f} ± {100 * best.ci95:.1f} points at U_test = {best.test_unlabelled} "
                         f"({best.verdict}); at U_test = {g.test_unlabelled.max()} it is "
                         f"{100 * g.iloc[-1].gap:+.1f} ± {100 * g.iloc[-1].ci95:.1f}.")
        if len(arms) == 2 and arms[0] == 0:
            u = arms[1]
            key_u, key_0 = (method, u, u, 0), (method, 0, u, 0)
            if key_u in rows.index and key_0 in rows.index:
                d = _difference(rows.loc[key_u], rows.loc[key_0])
                lines.append(f"{method}: at U_test = {u}, the arm trained with U = {u} minus the control is "
                             f"{100 * d['gap']:+.1f} ± {100 * d['ci95']:.1f} points ({d['verdict']}).")
            with_d = rows[(rows.index.get_level_values("method") == method)
                          & (rows.index.get_level_values("test_distractors") > 0)]
            for (m, arm, uu, dd), row in with_d.iterrows():
                if (m, arm, uu, 0) in rows.index:
                    d = _difference(row, rows.loc[(m, arm, uu, 0)])
                    lines.append(f"{method} (trained with U = {arm}): {dd} distractor classes at U_test = {uu} "
                                 f"change accuracy by {100 * d['gap']:+.1f} ± {100 * d['ci95']:.1f} points "
                                 f"({d['verdict']}).")
    return lines


def own_class_attention(model, support: torch.Tensor, labels: torch.Tensor, ways: int) -> float:
    """Mean share of a logits-layer placeholder's attention over the labelled support tokens that
    goes to its OWN class (last transformer layer, heads averaged). The paper's "stairway" pattern
    (its finding 4) means attention mostly on the OTHER classes: a share below 1/ways."""
    with torch.no_grad():
        _, maps = model.generate_weights(support, labels, ways, return_attention=True)
    att = maps["logits"][-1].mean(dim=1)[:, :ways, ways:]  # (tasks, placeholders, support tokens)
    own = torch.nn.functional.one_hot(labels.clamp(min=0), ways).transpose(1, 2).to(att.dtype)  # (tasks, N, S)
    own = own * (labels >= 0).unsqueeze(1)
    labelled = (labels >= 0).unsqueeze(1).to(att.dtype)
    return float(((att * own).sum(-1) / (att * labelled).sum(-1)).mean())


def kernel_variation(model, support: torch.Tensor, labels: torch.Tensor, ways: int) -> dict[str, float]:
    """Per generated conv layer: mean over tasks of ||W_task - mean W|| / ||mean W||, the "how much
    do generated kernels change from task to task" of the paper's finding 5 (roughly 10-15%)."""
    with torch.no_grad():
        weights = model.generate_weights(support, labels, ways)
    out = {}
    for name in getattr(model, "generators", {}):
        if name == "logits":
            continue
        w = weights[name].flatten(1)
        out[name] = float(((w - w.mean(0)).norm(dim=1) / w.mean(0).norm()).mean())
    return out
