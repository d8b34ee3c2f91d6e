"""What the committed runs say, as Markdown rendered from the result files.

The notebooks end with a section on the committed results; every number in it comes from here,
computed from `results/`, so the prose cannot drift from the files. Interpretation that holds
whatever the numbers are stays in the notebooks' own Markdown.
"""

from __future__ import annotations

import pandas as pd

from htlib.report import (FINDING1_BASELINES, KERNEL_VARIATION_BAND, PAPER_EPISODES, seed_mean, semi_verdicts,
                          verdicts)

KEYS_SEMI = ["method", "train_unlabelled", "test_unlabelled", "test_distractors"]


def _devices(table: pd.DataFrame) -> str:
    return ", ".join(sorted(table["device"].astype(str).unique()))


def _budget(table: pd.DataFrame) -> str:
    """'300 steps × 4 episodes = 1,200 training episodes' when every row shares one budget."""
    steps, seen = table["steps"].unique(), table["episodes_seen"].unique()
    if len(steps) == 1 and len(seen) == 1 and steps[0]:
        per_step = int(seen[0]) // int(steps[0])
        return f"{int(steps[0]):,} steps × {per_step} episodes = {int(seen[0]):,} training episodes"
    return f"{int(seen.min()):,}-{int(seen.max()):,} training episodes"


def sweep_summary(table: pd.DataFrame, profile: str, grid_cells: int) -> str:
    """The budget, completeness and computed verdicts of one committed sweep."""
    if table.empty:
        return f"**`{profile}`**: no committed sweep table."
    others = tuple(m for m in FINDING1_BASELINES if m in set(table["method"]))
    head = (f"**`{profile}`, on {_devices(table)}**: {_budget(table)} per cell; {len(table)} of {grid_cells} "
            f"cells finished, {table['wall_seconds'].sum() / 60:.0f} min of cell time; "
            f"{int(table['test_episodes'].min())} test episodes per cell.")
    return "\n".join([head, ""] + [f"* {line}" for line in verdicts(table, "ht-all", others)])


def device_agreement(table: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Conditions of a semi-supervised table matched with the same run on another device: the
    difference in points and whether it lies within the combined 95% CI."""
    both = table.merge(other, on=KEYS_SEMI, suffixes=("", "_other"))
    both["difference (points)"] = (100 * (both.test_accuracy - both.test_accuracy_other)).round(2)
    both["within CI"] = both["difference (points)"].abs() <= 100 * (both.ci95 ** 2 + both.ci95_other ** 2) ** 0.5
    return both


def semi_summary(table: pd.DataFrame, other_device: pd.DataFrame | None = None,
                 attention: pd.DataFrame | None = None) -> str:
    """The setting, computed verdicts, attention shares and cross-device check of the semi experiment.

    attention: rows (model, tokens, attention share, uniform) as notebook 04 measures them.
    """
    if table.empty:
        return "No committed semi-supervised table."
    arm_episodes = (table["episodes_seen"] - table["base_episodes"]).unique()
    arms = table.groupby(["method", "train_unlabelled"]).ngroups
    head = (f"Setting: {table['ways'].iloc[0]}-way {table['shots'].iloc[0]}-shot {table['dataset'].iloc[0]}, "
            f"C = {table['channels'].iloc[0]}, seed {table['seed'].iloc[0]}. Each arm continues its base "
            f"({int(table['base_episodes'].max()):,} training episodes) for "
            f"{', '.join(f'{int(e):,}' for e in arm_episodes)} more; {int(table['test_episodes'].min())} test "
            f"episodes per condition. {arms} arms and {len(table)} tests on {_devices(table)}.")
    lines = [head, ""] + [f"* {line}" for line in semi_verdicts(table)]
    if attention is not None and not attention.empty:
        trained = attention[attention["model"] == attention["model"].iloc[-1]]
        shares = "; ".join(f"{r['tokens']}: {r['attention share']:.1%} (uniform {r['uniform']:.1%})"
                           for _, r in trained.iterrows())
        lines.append(f"* Attention of the logits placeholders, {trained['model'].iloc[0]}: {shares}.")
    if other_device is not None and not other_device.empty:
        both = device_agreement(table, other_device)
        lines.append(f"* The same experiment on {_devices(other_device)}: {int(both['within CI'].sum())} of "
                     f"{len(both)} conditions agree within their combined 95% CI.")
    return "\n".join(lines)


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


def recipe_summary(table: pd.DataFrame, gaps: pd.DataFrame, arms_in_study: int) -> str:
    """How far the study has come, the baseline, and which arms beat, trail or match it (CIs)."""
    if table.empty or "baseline" not in set(table["arm"]):
        return f"No committed recipe runs with a baseline yet (0 of {arms_in_study} arms)."
    base = table[table["arm"] == "baseline"]
    spread = (f" (seeds {', '.join(f'{100 * a:.1f}%' for a in base['test_accuracy'])}: the training's own noise)"
              if len(base) > 1 else "")
    lines = [f"{table['arm'].nunique()} of {arms_in_study} arms finished ({len(table)} runs, seeds "
             f"{sorted(int(s) for s in table['seed'].unique())}), {int(base['episodes'].iloc[0]):,} training episodes each "
             f"(see the table for exceptions), on {_devices(table)}; the baseline scores "
             f"{100 * base['test_accuracy'].mean():.1f}% on the test episodes{spread}, with "
             f"{100 * base['train_accuracy'].mean():.1f}% training and {100 * base['val_accuracy'].mean():.1f}% "
             f"best validation accuracy.", ""]
    for verdict, heading in (("better", "Better than the baseline"), ("worse", "Worse than the baseline"),
                             ("no clear difference", "No clear difference")):
        chosen = gaps[gaps["verdict"] == verdict].sort_values("gap", ascending=False)
        listed = "; ".join(f"`{r.arm}` {100 * r.gap:+.1f} ± {100 * r.ci95:.1f}" + (f" ({r.seeds} seeds)" if r.seeds > 1 else "")
                           for r in chosen.itertuples())
        lines.append(f"* **{heading}** (test accuracy, points): {listed or 'none'}.")
    better = gaps[gaps["verdict"] == "better"].sort_values("gap", ascending=False)
    lines.append("")
    lines.append("Changes that beat the baseline beyond their CI: " + ", ".join(
        f"`{r.arm}` ({r.seeds} seed{'s' if r.seeds > 1 else ''})" for r in better.itertuples()) + "." if len(better) else
                 "No change beats the baseline beyond its CI.")
    return "\n".join(lines)


def confirmation_summary(table: pd.DataFrame, gaps: pd.DataFrame | None, profile: str) -> str:
    """The study at a longer budget: the baseline, and each arm trained there against it (the gap,
    its verdict, the cost); or what is still to train."""
    if table.empty or "baseline" not in set(table["arm"]) or gaps is None or gaps.empty:
        return (f"Nothing to compare at `{profile}` yet: train the baseline and an arm, e.g. `python -m htlib "
                f"recipe --profile {profile} --arms baseline shift-2` (resumable).")

    def score(rows: pd.DataFrame) -> str:
        mean = seed_mean(rows)
        return f"{100 * mean.test_accuracy:.1f}% ± {100 * mean.ci95:.1f}"

    base = table[table["arm"] == "baseline"]
    lines = [f"At the `{profile}` budget ({int(base['episodes'].iloc[0]):,} training episodes per run, seed(s) "
             f"{sorted(int(s) for s in table['seed'].unique())}, {_devices(table)}) the baseline scores **{score(base)}** "
             f"on the test episodes ({100 * base['train_accuracy'].mean():.1f}% training accuracy over the last tenth, "
             f"{base['wall_seconds'].mean() / 60:.0f} minutes per run).", ""]
    for gap in gaps.itertuples():
        own = table[table["arm"] == gap.arm]
        lines.append(f"* `{gap.arm}` ({own['change'].iloc[0]}): **{score(own)}**, a gap of {100 * gap.gap:+.1f} ± "
                     f"{100 * gap.ci95:.1f} points ({gap.verdict}); {100 * own['train_accuracy'].mean():.1f}% training "
                     f"accuracy, {own['wall_seconds'].mean() / 60:.0f} minutes.")
    return "\n".join(lines)

def fidelity_summary(tables: dict[str, pd.DataFrame], profile: str, ways: int = 20) -> str:
    """What the fidelity study says so far: the protocol's share and each reference choice's, as
    bullets computed from the tables (protocol -> results/fidelity_<protocol>_<profile>_*.csv),
    against the paper's Omniglot 20-way 1-shot accuracy, then which arms plain SGD trains."""
    from htlib.report import PAPER_REPORTED, fidelity_table, protocol_gap

    paper_accuracy = PAPER_REPORTED[("omniglot", 20, 1)]["HT (paper)"] / 100
    if not any(len(t) for t in tables.values()):
        return f"**`{profile}`**: no fidelity run committed yet."
    lines = []
    base = protocol_gap(tables)
    if base is None:
        lines.append("The baseline has not been trained on both protocols with a common seed yet.")
    else:
        lines.append(f"**Protocol.** Today's model and recipe score {100 * base['paper']:.1f}% on the `paper` protocol "
                     f"against {100 * base['vinyals']:.1f}% on `vinyals` ({base['seeds']} seed"
                     f"{'s' if base['seeds'] > 1 else ''}): {100 * base['gap']:+.1f} ± {100 * base['ci95']:.1f} "
                     f"points ({base['verdict']}) come from the protocol alone. The paper reports "
                     f"{100 * paper_accuracy:.1f}%.")
    table = fidelity_table(tables)
    for protocol in tables:
        if f"{protocol} gap" not in table:
            continue
        parts = []
        for r in table.dropna(subset=[f"{protocol} gap"]).to_dict("records"):
            n = int(r[f"{protocol} seeds"])
            parts.append(f"`{r['arm']}` {100 * r[f'{protocol} gap']:+.1f} ± {100 * r[f'{protocol} ci95']:.1f} "
                         f"({r[f'{protocol} verdict']}, {n} seed{'s' if n > 1 else ''})")
        lines.append(f"**The reference's choices on `{protocol}`** (each arm minus that protocol's baseline, in "
                     f"points, with the 95% CI of the test episodes): " + "; ".join(parts) + ".")
    lines += [line for protocol, t in tables.items() if (line := _sgd_finding(t, protocol, ways))]
    return "\n".join(f"* {line}" for line in lines)


def _sgd_finding(table: pd.DataFrame, protocol: str, ways: int) -> str | None:
    """Which of the fidelity study's plain-SGD arms leave chance, and which part of the reference
    model stalls SGD (from the `sgd+<part>` and `sgd-glorot` arms), or None without SGD runs."""
    from htlib.experiments.recipe import FIDELITY_ARMS

    sgd_arms = [arm for arm, a in FIDELITY_ARMS.items() if a.overrides.get("optimizer") == "sgd"]
    accuracy = table[table.arm.isin(sgd_arms)].groupby("arm")["test_accuracy"].mean().reindex(sgd_arms).dropna()
    if accuracy.empty:
        return None
    # A stalled run tests at chance, 1/N (its loss stays at ln N); at 20-way the runs that learn
    # reach 15-18% within their quarter budget, so twice chance separates the two with room either way.
    stalled = accuracy < 2 / ways
    listed = {flag: ", ".join(f"`{arm}` {100 * acc:.1f}%" for arm, acc in accuracy[stalled == flag].items())
              for flag in (False, True)}
    text = (f"**Plain SGD on `{protocol}`** (B = 1, lr 0.02, a quarter of the episodes; chance {100 / ways:.1f}%): "
            f"leave chance: {listed[False] or 'none'}; stay at it (under twice chance): {listed[True] or 'none'}.")
    # the reference model's parts, each alone under this SGD: sgd+<part>, and sgd-glorot for its initialisation
    parts = {arm.removeprefix("sgd+") if arm.startswith("sgd+") else "glorot-init": stalled[arm]
             for arm in accuracy.index if arm.startswith("sgd+") or arm == "sgd-glorot"}
    if parts and "reference-all" in stalled and stalled["reference-all"]:
        culprits = [f"`{part}`" for part, flag in parts.items() if flag]
        named = " and ".join([", ".join(culprits[:-1]), culprits[-1]] if len(culprits) > 1 else culprits)
        text += (f" Each part of the reference model put alone under this SGD ({len(parts)} measured): "
                 + (f"{named} {'keeps' if len(culprits) == 1 else 'each keep'} it at chance, the others do not."
                    if culprits else "none keeps it at chance: the stall of `reference-all` needs several of them."))
    return text


def campaign_summary(campaign: dict) -> str:
    """Where one campaign stands (a row of htlib.campaign.status), against the paper's numbers for
    Omniglot 20-way at 1 and 5 shots and its 4M training episodes: Markdown bullets."""
    from htlib.report import PAPER_REPORTED

    c = campaign
    trained_shots = c.get("shots", 1)
    machines = f" ({', '.join(c['cpus'])})" if c["cpus"] else ""
    lines = []
    if c.get("init"):  # a fine-tune: where its weights came from
        start = c["init"]
        lines.append(f"**Start.** The best weights of `{start['from']}` after {start['trained_episodes']:,} episodes "
                     f"(best at {start['best_at_episodes']:,}, validation {100 * start['best_val_accuracy']:.1f}% "
                     f"at 1 shot), fine-tuned at {trained_shots} shots.")
    lines.append(f"**Budget.** {c['episodes']:,} {'fine-tuning' if c.get('init') else 'training'} episodes, "
                 f"{c['episodes'] / PAPER_EPISODES:.1%} of the paper's {PAPER_EPISODES:,}, in {c['segments']} "
                 f"segment{'s' if c['segments'] != 1 else ''} and {c['hours']:.1f} CPU hours{machines}, on the "
                 f"`{c['split_scheme']}` split.")
    if c["best_val_accuracy"] is not None:
        lines.append(f"**Validation.** Best so far {100 * c['best_val_accuracy']:.1f}% at "
                     f"{c['best_at_episodes']:,} episodes.")
    for shots, (accuracy, ci95, episodes) in sorted(c["tests"].items()):
        paper = PAPER_REPORTED[("omniglot", 20, shots)]["HT (paper)"]
        trained = ("as trained" if shots == trained_shots else
                   f"the {trained_shots}-shot model given {shots} support image{'s' if shots > 1 else ''} per class")
        lines.append(f"**Test, {shots}-shot** ({trained}): {100 * accuracy:.1f} ± {100 * ci95:.1f}% with the best "
                     f"weights after {episodes:,} episodes, {paper - 100 * accuracy:.1f} points below the paper's "
                     f"{paper}%.")
    if not c["tests"]:
        lines.append("No test yet: the first segment's end tests the best weights.")
    if c["result"] is not None:
        lines.append(f"**Finished.** Final test {100 * c['result']['test_accuracy']:.1f} ± "
                     f"{100 * c['result']['ci95']:.1f}%.")
    return "\n".join(f"* {line}" for line in lines)
