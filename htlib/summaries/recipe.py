"""The recipe and fidelity studies (notebook 06): which arms beat, trail or match the baseline, the
protocol's share of the gap to the paper, and which arms plain SGD trains."""

from __future__ import annotations

import pandas as pd

from htlib.data.protocols import PROTOCOLS
from htlib.experiments.recipe import BASELINE, FIDELITY_ARMS, fidelity_table, protocol_gap, recipe_gaps
from htlib.profiles import get_profile
from htlib.report import PAPER_REPORTED, difference, seed_mean
from htlib.summaries.text import ProseError, devices, gap_text, hardware, listing, one, signed, md_table, wrap


def recipe_summary(table: pd.DataFrame, gaps: pd.DataFrame, arms_in_study: int) -> str:
    """How far the study has come, the baseline, and which arms beat, trail or match it (CIs)."""
    if table.empty or "baseline" not in set(table["arm"]):
        return f"No committed recipe runs with a baseline yet (0 of {arms_in_study} arms)."
    base = table[table["arm"] == "baseline"]
    spread = (f" (seeds {', '.join(f'{100 * a:.1f}%' for a in base['test_accuracy'])}: the training's own noise)"
              if len(base) > 1 else "")
    lines = [f"{table['arm'].nunique()} of {arms_in_study} arms finished ({len(table)} runs, seeds "
             f"{sorted(int(s) for s in table['seed'].unique())}), {int(base['episodes'].iloc[0]):,} training episodes each "
             f"(see the table for exceptions), on {devices(table)}; the baseline scores "
             f"{100 * base['test_accuracy'].mean():.1f}% on the test episodes{spread}, with "
             f"{100 * base['train_accuracy'].mean():.1f}% training and {100 * base['val_accuracy'].mean():.1f}% "
             f"best validation accuracy.", ""]
    for verdict, heading in (("better", "Better than the baseline"), ("worse", "Worse than the baseline"),
                             ("no clear difference", "No clear difference"),
                             ("other budget", "Trained on another budget, so not ranked")):
        chosen = gaps[gaps["verdict"] == verdict].sort_values("gap", ascending=False)
        listed = "; ".join(f"`{r.arm}` {100 * r.gap:+.1f} ± {100 * r.ci95:.1f}" + (f" ({r.seeds} seeds)" if r.seeds > 1 else "")
                           for r in chosen.itertuples())
        if listed or verdict != "other budget":
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
             f"{sorted(int(s) for s in table['seed'].unique())}, {devices(table)}) the baseline scores **{score(base)}** "
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
            if r[f"{protocol} verdict"] == "other budget":  # the plain-SGD arms: their own bullet below
                continue
            n = int(r[f"{protocol} seeds"])
            parts.append(f"`{r['arm']}` {signed(100 * r[f'{protocol} gap'])} ± {100 * r[f'{protocol} ci95']:.1f} "
                         f"({r[f'{protocol} verdict']}, {n} seed{'s' if n > 1 else ''})")
        if not parts:
            continue
        lines.append(f"**The reference's choices on `{protocol}`** (each arm minus that protocol's baseline, in "
                     f"points, with the 95% CI of the test episodes): " + "; ".join(parts) + ".")
    lines += [line for protocol, t in tables.items() if (line := _sgd_finding(t, protocol, ways))]
    return "\n".join(f"* {line}" for line in lines)


def fidelity_budget(by_profile: dict[str, dict[str, pd.DataFrame]]) -> str | None:
    """The budget's share: on each protocol, the baseline at every profile it was trained at
    (by_profile: profile -> protocol -> its fidelity table), fewest episodes first, as one bullet per
    protocol; None while no protocol has its baseline at two budgets. Accuracies are means over each
    budget's seeds, and the step between two budgets compares them on the seeds both share."""
    lines = []
    for protocol in PROTOCOLS:
        bases = []
        for profile, tables in by_profile.items():
            table = tables.get(protocol)
            if table is not None and BASELINE in set(table["arm"]):
                rows = table[table["arm"] == BASELINE].set_index("seed")
                bases.append((int(rows["episodes"].max()), profile, rows))
        if len(bases) < 2:
            continue
        bases.sort(key=lambda b: b[0])
        parts, previous = [], None
        for episodes, profile, rows in bases:
            seeds = [] if previous is None else sorted(set(previous[1].index) & set(rows.index))
            gain = "" if not seeds else difference(seed_mean(rows.loc[seeds]), seed_mean(previous[1].loc[seeds]))
            n = len(rows)
            parts.append(f"{100 * rows['test_accuracy'].mean():.1f}% at `{profile}` ({episodes:,} episodes, {n} seed"
                         f"{'s' if n > 1 else ''}" + (f"; {signed(100 * gain['gap'])} ± {100 * gain['ci95']:.1f} points "
                                                       f"over `{previous[0]}` on the seeds both have" if gain else "") + ")")
            previous = (profile, rows)
        text = ", then ".join(parts)
        lines.append(f"**Budget on `{protocol}`.** Today's model and recipe (the baseline) score {text}.")
    return "\n".join(f"* {line}" for line in lines) or None


def _sgd_finding(table: pd.DataFrame, protocol: str, ways: int) -> str | None:
    """Which of the fidelity study's plain-SGD arms leave chance, and which part of the reference
    model stalls SGD (from the `sgd+<part>` and `sgd-glorot` arms), or None without SGD runs."""
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


def recipe_section(tables: dict[str, pd.DataFrame], dataset: str) -> str:
    """The recipe study (results/recipe_<profile>_omniglot.csv): at each profile, the baseline and
    each arm's gap to it on the seeds they share, best first."""
    parts = []
    for profile, t in tables.items():
        base = t[t.arm == BASELINE]
        if base.empty:
            raise ProseError(f"results/recipe_{profile}_{dataset}.csv has no baseline row")
        seeds = ", ".join(f"{100 * a:.1f}%" for a in base.test_accuracy)
        parts.append(wrap(
            f"`results/recipe_{profile}_{dataset}.csv`: {t.arm.nunique() - 1} arms against the baseline at the `{profile}` "
            f"budget, {one(base.episodes, 'baseline episodes'):,} training episodes per run (20-way 1-shot, C = 8; "
            f"exceptions in the table), {len(t)} runs on {listing(hardware(d) for d in sorted(t.device.unique()))}, "
            f"test accuracy on {get_profile(profile).test_episodes} fixed test episodes. The baseline (today's defaults) "
            f"scores {seeds} (seed{'s' if len(base) > 1 else ''} {listing(sorted(base.seed))}). The gap is each arm minus "
            f"the baseline on the seeds both have, in points with a 95% CI that holds the test episodes' noise only"
            + (f"; the baseline's two seeds alone differ by {100 * (base.test_accuracy.max() - base.test_accuracy.min()):.1f} "
               f"points, so a one-seed gap of that size is no finding." if len(base) > 1 else ".")))
        gaps = recipe_gaps(t).sort_values("gap", ascending=False)
        episodes = t.groupby("arm")["episodes"].max()
        rows = [[f"`{g.arm}`", g.change, str(g.seeds), f"{episodes[g.arm]:,}", f"{100 * g.test_accuracy:.1f}",
                 gap_text(g), g.verdict] for g in gaps.itertuples()]
        parts.append("\n".join(md_table(["arm", "change", "seeds", "episodes", "test accuracy (%)", "gap (points)",
                                           "verdict"], rows)))
    return "\n\n".join(parts)


def fidelity_section(tables: dict[str, pd.DataFrame], profile: str, dataset: str, budget: str | None = None) -> str:
    """The fidelity study (results/fidelity_<protocol>_quick_omniglot.csv): what the protocol and each
    of the reference's choices change, from htlib.summaries / htlib.report, and the table; `budget`
    (fidelity_budget's bullets) joins the summary's bullets."""
    if not tables:
        return "No fidelity run committed yet (`python -m htlib recipe --study fidelity --protocol paper`)."
    parts = [wrap(f"`results/fidelity_<protocol>_{profile}_{dataset}.csv` ({listing(f'`{p}`' for p in tables)}): "
                  f"every run at the `{profile}` budget, 20-way 1-shot, C = 8, test accuracy on "
                  f"{get_profile(profile).test_episodes} fixed test episodes of its own protocol."),
             "\n".join(wrap(line[2:], bullet=True) for line in
                       (fidelity_summary(tables, profile) + ("\n" + budget if budget else "")).splitlines())]
    table = fidelity_table(tables)
    header, rows = ["arm", "change"], []
    for protocol in tables:
        header += [f"`{protocol}` (%)", "gap (points)"]
    for r in table.to_dict("records"):
        row = [f"`{r['arm']}`", r["change"]]
        for protocol in tables:
            acc = r.get(f"{protocol} accuracy")
            row.append("–" if acc is None or pd.isna(acc) else f"{100 * acc:.1f} ({int(r[f'{protocol} seeds'])})")
            gap = r.get(f"{protocol} gap")
            row.append("–" if gap is None or pd.isna(gap) else
                       f"{signed(100 * gap)} ± {100 * r[f'{protocol} ci95']:.1f}")
        rows.append(row)
    parts.append("\n".join(md_table(header, rows)))
    parts.append("In brackets: the seeds behind an accuracy (a gap uses the seeds the arm shares with the baseline).")
    return "\n\n".join(parts)
