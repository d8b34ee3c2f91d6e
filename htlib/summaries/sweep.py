"""The CNN-size sweeps (notebook 03): budgets, accuracy tables and what the gaps say about the
paper's first finding."""

from __future__ import annotations

import re

import pandas as pd

from htlib.methods import method_label
from htlib.report import FINDING1_BASELINES, PAPER_EPISODES, PAPER_REPORTED, accuracy_grid, findings, gaps
from htlib.summaries.text import (PAPER_NOTES, VERB, dataset_name, gap_text, hardware, listing, method_order, on, one,
                                  paper_name, signed, md_table, wrap)


# The sweep table's method column, where it says more than the method's name.
SWEEP_NAMES = {"maml": "maml (2nd order, 5 steps)"}


# The paper's claim of finding 1 (generate all layers), by the status htlib.report.findings gives it.
CLAIM = {"reproduced": "the paper's claim holds at small C and fades with size",
         "partly": "the paper's claim holds only in part",
         "not reproduced": "the paper's claim is **not** reproduced"}


def sweep_section(sweeps: dict[str, pd.DataFrame], gpu_log: str = "") -> str:
    """Notebook 03's CNN-size sweeps: their budgets, one accuracy table, and what the gaps say.

    Bold marks the most accurate method of a column (shots, C) among the cells of the sweep with
    the most training, where it compared more than one method.
    """
    sweeps = {p: t for p, t in sweeps.items() if not t.empty}
    every = pd.concat(sweeps.values())
    channels = sorted(every.channels.unique())
    grid = every.shots.nunique() * len(channels)  # cells of one method
    windows = {p: (int(w), float(m)) for p, w, m in
               re.findall(r"^== sweep (\w+): (\d+) workers, new cells for ([\d.]+) min", gpu_log, re.MULTILINE)}
    seeds = sorted(every.seed.unique())
    top = max(sweeps, key=lambda p: sweeps[p].episodes_seen.max())
    head = [(f"Test accuracy (%) ± 95% CI, {one(every.ways, 'ways')}-way {dataset_name(one(every.dataset, 'dataset'))}, "
             f"seed{'s' if len(seeds) > 1 else ''} {listing(seeds)}, {one(every.test_episodes, 'test episodes')} test "
             f"episodes per cell (the same for every method).")]
    head += [_sweep_budget(p, t, grid * t.method.nunique(), windows.get(p)) for p, t in sweeps.items()]
    head.append(f"Blank: not run; bold: the best `{top}` cell of a column.")
    lines = [wrap(" ".join(head))]
    lines += [""] + _sweep_table(sweeps, channels, top) + [""]
    by_training = sorted(sweeps, key=lambda p: -sweeps[p].episodes_seen.max())  # the most trained first
    lines += [wrap(sweep_findings(sweeps[p], p, p == by_training[-1] and len(sweeps) > 1), bullet=True)
              for p in by_training]
    lines.append(wrap(_paper_scale(every), bullet=True))
    return "\n".join(lines)


def _sweep_budget(profile: str, t: pd.DataFrame, cells: int, window: tuple[int, float] | None) -> str:
    """One sweep's budget and hardware, and how much of it finished (window: workers, minutes)."""
    steps = one(t.steps, f"{profile} steps")
    text = (f"`{profile}`: {steps:,} steps x {one(t.episodes_seen, f'{profile} episodes') // steps} episodes "
            f"per cell on {on(one(t.device, f'{profile} device'))}")
    if window:
        text += f", {window[0]} cells at a time"
    if len(t) == cells:
        return (text + f", the whole {cells}-cell sweep in {t.wall_seconds.sum():,.0f} s "
                f"({t.wall_seconds.sum() / 60:.0f} min) of cell time.")
    return text + f", {len(t)} of {cells} cells finished" + (f" in a {window[1]:.0f}-minute window." if window else ".")


def _sweep_table(sweeps: dict[str, pd.DataFrame], channels: list[int], top: str) -> list[str]:
    rows = []
    for shots in sorted(pd.concat(sweeps.values()).shots.unique()):
        for profile, t in sweeps.items():
            t = t[t.shots == shots]
            if t.empty:
                continue
            grid = accuracy_grid(t)
            mean = t.groupby(["channels", "method"]).test_accuracy.mean()
            for method in sorted(t.method.unique(), key=method_order):
                cells = []
                for c in channels:
                    cell = grid.loc[(shots, method)].get(f"C={c}")
                    column = mean.xs(c, level="channels") if c in t.channels.values else pd.Series()
                    bold = profile == top and len(column) > 1 and column.get(method) == column.max()
                    cells.append("" if pd.isna(cell) else f"**{cell}**" if bold else cell)
                rows.append([str(shots), f"`{profile}` {SWEEP_NAMES.get(method, method)}", *cells])
    return md_table(["shots", "method", *(f"C={c}" for c in channels)], rows)


def sweep_findings(t: pd.DataFrame, profile: str, least_training: bool = False) -> str:
    """What one sweep says about the paper's claim (1), from htlib.report's gaps and finding 1:
    the claim's status, the gaps at the smallest C, and where across C generating all layers is
    ahead of or behind each baseline. README's section and notebook 03 both print it."""
    others = tuple(m for m in FINDING1_BASELINES if m in set(t.method))
    g = gaps(t, "ht-all", others)
    ways = one(t.ways, "ways")
    status = findings({profile: t}, pd.DataFrame(), None, None, profile, ways).set_index("finding").loc[1, "status"]
    claim = CLAIM.get(status, "the sweep does not test the paper's claim")
    text = (f"`{profile}` ({hardware(one(t.device, 'device'))}, {one(t.episodes_seen, 'episodes'):,} training "
            f"episodes per cell; chance is {100 / ways:.0f}%): {claim}.")
    if g.empty:
        return text
    smallest = g.channels.min()
    small = g[g.channels == smallest]
    parts = []
    for other in others:
        rows = small[small.versus == other]
        verbs = set(rows.verdict)
        verb = VERB[verbs.pop()] if len(verbs) == 1 else "differs from"
        parts.append(f"{verb} {_against(other)} by "
                     + " and ".join(f"{gap_text(r)} points ({r.shots}-shot)" for r in rows.itertuples()))
    text += f" At C = {smallest} generating all layers {', and '.join(parts)}."
    for other in others:
        by_shots = {}
        for shots, rows in g[g.versus == other].groupby("shots"):
            by_shots.setdefault(_where(rows.sort_values("channels")), []).append(f"{shots}-shot")
        text += (f" Against {_against(other)} it is "
                 + "; ".join(f"{where} ({' and '.join(shots)})" for where, shots in by_shots.items()) + ".")
    if least_training:
        text += " At this budget the sweep shows speed of learning more than final accuracy."
    return text


def _against(method: str) -> str:
    return "generating the logits only" if method == "ht-logits" else method_label(method, short=True)


def _where(rows: pd.DataFrame) -> str:
    """Where HT-all is ahead / behind a baseline across C: 'ahead at C = 4, 6 (+15.9, +6.6) and behind at C = 16'."""
    ahead, behind, level = (rows[rows.verdict == v] for v in ("better", "worse", "no clear difference"))
    if len(ahead) == len(rows) or len(behind) == len(rows):
        return f"{'ahead' if len(ahead) else 'behind'} at every C"
    parts = []
    if len(ahead):
        parts.append(f"ahead at C = {listing(ahead.channels)} ({listing(signed(100 * x) for x in ahead.gap)})")
    if len(level):
        parts.append(f"level at C = {listing(level.channels)}")
    if len(behind):
        parts.append(f"behind at C = {listing(behind.channels)}")
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def _paper_scale(table: pd.DataFrame) -> str:
    shots = sorted(table.shots.unique())
    paper = {s: PAPER_REPORTED.get((one(table.dataset, "dataset"), one(table.ways, "ways"), s), {}) for s in shots}
    labels = list(dict.fromkeys(label for numbers in paper.values() for label in numbers))
    parts = []
    for label in labels:
        numbers = " and ".join(f"{paper[s][label]}% ({s}-shot)" for s in shots if label in paper[s])
        after = f" after {PAPER_EPISODES / 1e6:g}M episodes" if label == "HT (paper)" else ""
        parts.append(f"{paper_name(label)}: {numbers}{after}")
    return f"Paper, for scale ({PAPER_NOTES}): {'; '.join(parts)}."
