"""The semi-supervised runs (notebook 04): the setting, the accuracy table and what unlabelled
samples change, for each method."""

from __future__ import annotations

import math

import pandas as pd

from htlib.methods import method_label
from htlib.report import findings, unlabelled_gains
from htlib.summaries.text import change_text, dataset_name, gap_text, hardware, method_order, on, one, md_table, wrap


KEYS_SEMI = ["method", "train_unlabelled", "test_unlabelled", "test_distractors"]


def device_agreement(table: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Conditions of a semi-supervised table matched with the same run on another device: the
    difference in points and whether it lies within the combined 95% CI."""
    both = table.merge(other, on=KEYS_SEMI, suffixes=("", "_other"))
    both["difference (points)"] = (100 * (both.test_accuracy - both.test_accuracy_other)).round(2)
    both["within CI"] = both["difference (points)"].abs() <= 100 * (both.ci95 ** 2 + both.ci95_other ** 2) ** 0.5
    return both


def semi_section(table: pd.DataFrame, train_seconds: dict[tuple[str, int], float],
                 other: pd.DataFrame | None = None, other_path: str = "") -> str:
    """Notebook 04's semi-supervised runs: setting, one accuracy table, and what the gains say.

    train_seconds: each arm's training time, by (method, U in training); a row's wall_seconds is
    its arm's training plus that one test (htlib.experiments.semi), so the total counts each
    training once.
    """
    arms = table.groupby(["method", "train_unlabelled"])
    seconds = sum(train_seconds[arm] + (rows.wall_seconds - train_seconds[arm]).sum() for arm, rows in arms)
    steps = one(table.steps, "steps")
    trained_u = one(table.train_unlabelled[table.train_unlabelled > 0], "U in training")
    per_step = one(table.episodes_seen - table.base_episodes, "episodes") // steps
    lines = [wrap(
        f"{one(table.ways, 'ways')}-way {one(table.shots, 'shots')}-shot {dataset_name(one(table.dataset, 'dataset'))}, "
        f"C = {one(table.channels, 'C')}, seed {one(table.seed, 'seed')}, `{one(table.profile, 'profile')}`. Each "
        f"method's supervised run above is continued for {steps:,} steps x {per_step} episodes, once with "
        f"U = {trained_u} unlabelled samples per class in training, once without (the control), and tested with U "
        f"unlabelled samples per class ({one(table.test_episodes, 'test episodes')} episodes each). All "
        f"{arms.ngroups} arms and {len(table)} tests: {seconds:,.0f} s of training and testing on "
        f"{on(one(table.device, 'device'))}. Test accuracy (%) ± 95% CI:"), ""]
    tests = sorted(set(zip(table.test_distractors, table.test_unlabelled)))
    header = ["method", "trained with"] + [f"U={u}" if d == 0 else f"U={u} + {d} distractor classes" for d, u in tests]
    cells = table.set_index(["method", "train_unlabelled", "test_distractors", "test_unlabelled"])
    rows = []
    for method in sorted(table.method.unique(), key=method_order):
        for arm in sorted(table.train_unlabelled[table.method == method].unique(), reverse=True):
            keys = [(method, arm, d, u) for d, u in tests]
            rows.append([method_label(method, short=True), f"U = {arm}" if arm else "U = 0 (control)"]
                        + [f"{100 * cells.loc[k].test_accuracy:.1f} ± {100 * cells.loc[k].ci95:.1f}"
                           if k in cells.index else "" for k in keys])
    lines += md_table(header, rows) + [""] + [wrap(b, bullet=True) for b in semi_findings(table, other, other_path)]
    return "\n".join(lines)


def semi_findings(table: pd.DataFrame, other: pd.DataFrame | None = None, other_path: str = "") -> list[str]:
    """What a semi-supervised table says, one paragraph per point: whether the HT gains from
    unlabelled samples (the paper's claim 2) and what they do to it untrained, what they and the
    distractor classes change for each other method, and whether `other` (the same runs on another
    device, read from `other_path`) agrees. README's section and notebook 04 both print these."""
    ways, shots, profile = one(table.ways, "ways"), one(table.shots, "shots"), one(table.profile, "profile")
    trained_u = one(table.train_unlabelled[table.train_unlabelled > 0], "U in training")
    status = findings({}, table, None, None, profile, ways).set_index("finding").loc[2, "status"]
    gains = unlabelled_gains(table)
    top_u = gains.test_unlabelled.max()
    control = gains[(gains.train_unlabelled == 0) & (gains.test_unlabelled == top_u)].set_index("method")
    ht = [m for m in control.index if m.startswith("ht-")]
    bullets = []
    if ht:
        trained = gains[(gains.method == "ht-all") & (gains.train_unlabelled > 0)]
        best = trained.loc[trained.gap.idxmax()] if len(trained) else None
        if status == "reproduced":
            text = "At this budget the HT gains from unlabelled samples"
        else:
            text = "At this budget the HT does **not** gain from unlabelled samples"
        if best is not None:
            text += (f" (trained with U = {trained_u}, its best change against U = 0 is {gap_text(best)} points, "
                     f"at U = {best.test_unlabelled})")
        text += f": the paper's claim (2) is {'reproduced' if status == 'reproduced' else 'not reproduced'}."
        if status != "reproduced":
            others = (ways - 1) * trained_u
            text += (f" Trained with them, it learns to ignore them: notebook 04 measures how little attention its "
                     f"logits placeholders give the {others} unlabelled tokens of other classes, though these make up "
                     f"{others / (ways * (shots + trained_u)):.0%} of the tokens.")
        hurts = control.loc[ht].verdict.eq("worse").all()
        text += (f" Without that training the untrained \"unlabelled\" embedding "
                 f"{'hurts' if hurts else 'changes accuracy by'}: "
                 + " and ".join(f"{gap_text(control.loc[m])} points ({method_label(m, short=True)})" for m in ht)
                 + f" at U = {top_u}.")
        bullets.append(text)
    distract = table[table.test_distractors > 0]
    for method in (m for m in control.index if m not in ht):
        text = (f"{method_label(method, short=True)} {change_text(control.loc[method])} from U = 0 to U = {top_u} without ever "
                f"being trained on unlabelled samples")
        rows = distract[(distract.method == method) & (distract.train_unlabelled == 0)]
        for r in rows.itertuples():
            clean = table[(table.method == method) & (table.train_unlabelled == 0) & (table.test_distractors == 0)
                          & (table.test_unlabelled == r.test_unlabelled)].iloc[0]
            change = pd.Series({"gap": r.test_accuracy - clean.test_accuracy, "ci95": math.hypot(r.ci95, clean.ci95)})
            text += f", and {change_text(change)} with {r.test_distractors} distractor classes (at U = {r.test_unlabelled})"
        bullets.append(text + ".")
    if other is not None and not other.empty:
        both = device_agreement(table, other)
        agree = int(both["within CI"].sum())
        count = f"all {len(both)}" if agree == len(both) else f"{agree} of {len(both)}"
        bullets.append(f"The same experiment on {on(one(other.device, 'device'))} (`{other_path}`) agrees with the "
                       f"{hardware(one(table.device, 'device'))} numbers within the combined CIs in {count} "
                       f"conditions.")
    return bullets
