"""README.md's result sections, rendered from the files in `results/`.

The README's numbers used to be typed by hand from the result files and would go stale without
anyone noticing. Now each result section sits between `<!-- results:NAME -->` and
`<!-- /results:NAME -->`, and `python -m htlib readme` (`make readme`) rewrites it from the files;
`--check` and tests/test_readme.py fail when the README and the files disagree.

The `render_*` functions take tables and dicts and return Markdown, so tests can feed them small
hand-made tables; `load` is the thin layer that reads the files. Wording that holds whatever the
numbers are is fixed text here; every sentence whose truth depends on the numbers is chosen by them.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import textwrap
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from htlib.campaign import status as campaign_status
from htlib.data.paths import PROJECT_ROOT
from htlib.data.protocols import PROTOCOLS
from htlib.errors import UserError
from htlib.methods import METHODS, method_label
from htlib.profiles import get_profile
from htlib.report import (FINDING1_BASELINES, PAPER_EPISODES, PAPER_REPORTED, SINGLE_RUNS, accuracy_grid, findings,
                          gaps, unlabelled_gains)
from htlib.summaries import device_agreement
from htlib.schemas import read_result, read_table
from htlib.utils import write_text_atomic

PROFILE, DATASET = "quick", "omniglot"  # the single runs and the semi-supervised experiment
SWEEP_PROFILES = ("quick", "long")
RECIPE_PROFILES = ("quick", "long")  # the study, then its confirmation at a longer budget
GPU_LOG = "results/gpu/gpu_job_h100.log"
SEMI_OTHER = "results/gpu/semi_quick_omniglot_h100.csv"  # the semi-supervised runs again, on a GPU
PAPER_NOTES = "docs/paper.md"

# The single runs' table: one row per method, in this order (labels: htlib.methods).
SINGLE_RUN_ORDER = tuple(SINGLE_RUNS)
# The sweep table's method column, where it says more than the method's name.
SWEEP_NAMES = {"maml": "maml (2nd order, 5 steps)"}
# The paper's claim of finding 1 (generate all layers), by the status htlib.report.findings gives it.
CLAIM = {"reproduced": "the paper's claim holds at small C and fades with size",
         "partly": "the paper's claim holds only in part",
         "not reproduced": "the paper's claim is **not** reproduced"}
VERB = {"better": "beats", "worse": "trails", "no clear difference": "does not clearly differ from"}


class ReadmeError(UserError, ValueError):
    """README.md's markers, or a result file, are not as the rendering needs them."""


@dataclass
class Results:
    """Everything the README's result sections are rendered from."""
    single_runs: dict[str, dict]  # result.json of each single run, by method
    sweeps: dict[str, pd.DataFrame]  # the CNN-size sweep tables, by profile
    semi: pd.DataFrame  # the semi-supervised table
    semi_train_seconds: dict[tuple[str, int], float]  # training time of each semi arm, by (method, U)
    semi_other: pd.DataFrame  # the semi-supervised table of the same runs on another device
    gpu_log: str  # the GPU job's log
    bench: dict[str, pd.DataFrame]  # `python -m htlib bench --out` tables, by file name (bench_cpu.csv, ...)
    recipe: dict[str, pd.DataFrame]  # the recipe study's tables, by profile (those that exist)
    fidelity: dict[str, pd.DataFrame]  # the fidelity study's tables at PROFILE, by protocol (those that exist)
    campaigns: list[dict]  # htlib.campaign.status of results/runs/campaign
    paper_test_tasks: int  # test tasks behind the paper's numbers


# ---- formatting ----

def _signed(points: float) -> str:
    """'+2.4' or '−9.5' with a true minus sign, as the README's prose writes them; never '−0.0'."""
    return f"{round(points, 1) + 0.0:+.1f}".replace("-", "−")


def _gap(row) -> str:
    """A difference of two accuracies (fractions) in points with its 95% CI: '+2.4 ± 0.8'."""
    return f"{_signed(100 * row.gap)} ± {100 * row.ci95:.1f}"


def _change(row) -> str:
    """'gains +6.5 ± 0.8 points' or 'loses 0.9 ± 0.8 points'."""
    if round(100 * row.gap, 1) >= 0:
        return f"gains {_gap(row)} points"
    return f"loses {-100 * row.gap:.1f} ± {100 * row.ci95:.1f} points"


def _one(values: pd.Series, what: str):
    """The one value a column holds: the README states one budget, one seed, ... per table."""
    unique = sorted(pd.unique(values))
    if len(unique) != 1:
        raise ReadmeError(f"{what}: the results hold several values {unique}, the README's sentence states one")
    return unique[0].item() if hasattr(unique[0], "item") else unique[0]


def _hardware(device: str) -> str:
    """'CPU', or a GPU's model: 'NVIDIA H100 80GB HBM3' -> 'H100'."""
    return "CPU" if device == "cpu" else device.removeprefix("NVIDIA ").split()[0]


def _on(device: str) -> str:
    return "the project's CPU" if device == "cpu" else f"one {_hardware(device)}"


def _dataset(name: str) -> str:
    return {"omniglot": "Omniglot", "miniimagenet": "miniImageNet"}.get(name, name)


def _paper_name(label: str) -> str:
    """PAPER_REPORTED's 'MAML++, C = 64 (paper)' -> 'MAML++ with C = 64'."""
    return label.removesuffix(" (paper)").replace(", ", " with ")


def _list(items) -> str:
    return ", ".join(str(i) for i in items)


def _wrap(text: str, bullet: bool = False) -> str:
    """Prose wrapped at 100 characters as the README's hand-written paragraphs are (a bullet: '- ',
    then indented), so that a regenerated section reads like the rest of the file's source. '± 0.8',
    'C = 4' and '20 s' stay on one line."""
    text = re.sub(r" ± | = |(?<=\d) (?=s\b|min\b|MiB\b)", lambda m: m.group().replace(" ", "\0"), text)
    return textwrap.fill(("- " if bullet else "") + text, width=100, subsequent_indent="  " if bullet else "",
                         break_long_words=False, break_on_hyphens=False).replace("\0", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + ["| " + " | ".join(r) + " |"
                                                                             for r in rows]


# ---- the sections ----

def render_single_runs(runs: dict[str, dict], paper_test_tasks: int) -> str:
    """The single runs of notebook 02 beside the paper's number, and what their gaps say."""
    order = [m for m in SINGLE_RUN_ORDER if m in runs] + sorted(m for m in runs if m not in SINGLE_RUN_ORDER)
    first = runs[order[0]]
    best = max(r["test_accuracy"] for r in runs.values())
    rows = []
    for method in order:
        r = runs[method]
        same = method != order[0] and _task(r) == _task(first) and _budget(r) == _budget(first)
        accuracy = f"{100 * r['test_accuracy']:.2f}% ± {100 * r['ci95']:.2f}%"
        rows.append([f"{method_label(method)}, "
                     + ("same task and budget" if same else _task(r)), f"`{r['profile']}`",
                     f"**{accuracy}**" if r["test_accuracy"] == best else accuracy, str(r["test_episodes"]),
                     (f"{r['episodes_seen']:,} episodes" if same
                      else f"{_budget(r)} = {r['episodes_seen']:,} episodes"),
                     f"{_hardware(r['device'])}, {r['wall_seconds']:,.0f} s"])
    paper = PAPER_REPORTED.get((first["dataset"], first["ways"], first["shots"]), {})
    if "HT (paper)" in paper:
        rows.append([f"paper ({PAPER_NOTES}), HT on the same task", f"{PAPER_EPISODES / 1e6:g}M single-episode steps",
                     f"{paper['HT (paper)']}%", f"{paper_test_tasks} (no CI)", f"{PAPER_EPISODES:,} episodes", ""])
    table = _table(["run", "profile", "test accuracy (95% CI)", "test episodes", "training", "hardware, wall time"],
                   rows)
    return "\n".join(table + ["", _wrap(_single_runs_prose(runs, paper))])


def _task(r: dict) -> str:
    return (f"{_dataset(r['dataset'])} {r['ways']}-way {r['shots']}-shot, C={r['channels']}, seed {r['seed']}")


def _budget(r: dict) -> str:
    return f"{r['steps']:,} steps x {r['episodes_seen'] // r['steps']} episodes"


def _single_runs_prose(runs: dict[str, dict], paper: dict) -> str:
    table = pd.DataFrame(runs.values())
    text = (f"All `{_one(table.profile, 'profile')}` rows are scored on the same "
            f"{_one(table.test_episodes, 'test episodes')} test episodes (fixed seed), one training seed each.")
    g = gaps(table, "ht-all", tuple(m for m in FINDING1_BASELINES if m in runs)).set_index("versus")
    if g.empty:
        return text
    point = "already point" if g.verdict.eq("better").all() else "do not all point"
    parts = []
    for other, what in (("ht-logits", "generating the logits layer only"), ("protonet", "ProtoNet's fixed embedding")):
        if other in g.index:
            parts.append(f"{VERB[g.loc[other].verdict]} {what} ({_gap(g.loc[other])} points)")
    text += (f" At this one size (C={_one(table.channels, 'C')}, {_one(table.shots, 'shots')}-shot) they {point} "
             f"the paper's way: generating every layer {' and '.join(parts)}")
    maml = [label for label in paper if label.startswith("MAML++")]
    if "maml" in runs and runs["maml"]["test_accuracy"] == table.test_accuracy.min():
        text += "; MAML with this tiny CNN learns slowly at this budget"
        if maml:
            text += (f" (the paper's {_paper_name(maml[0])} reaches {paper[maml[0]]}% after far longer "
                     f"training)")
    return text + "."


def render_budget(runs: dict[str, dict]) -> str:
    """How much of the paper's training the single HT run saw."""
    r = runs["ht-all"]
    hardware = "a CPU" if r["device"] == "cpu" else _on(r["device"])
    return _wrap(f"The `{r['profile']}` run sees {r['episodes_seen'] / PAPER_EPISODES:.1%} of the paper's training "
                 f"episodes; its learning curve (notebook 02, `results/runs/{r['profile']}/...`) is still rising "
                 f"slowly at the end. It shows that the method learns on {hardware}, not the paper's final number.")


def render_sweep(sweeps: dict[str, pd.DataFrame], gpu_log: str = "") -> str:
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
    head = [(f"Test accuracy (%) ± 95% CI, {_one(every.ways, 'ways')}-way {_dataset(_one(every.dataset, 'dataset'))}, "
             f"seed{'s' if len(seeds) > 1 else ''} {_list(seeds)}, {_one(every.test_episodes, 'test episodes')} test "
             f"episodes per cell (the same for every method).")]
    head += [_sweep_budget(p, t, grid * t.method.nunique(), windows.get(p)) for p, t in sweeps.items()]
    head.append(f"Blank: not run; bold: the best `{top}` cell of a column.")
    lines = [_wrap(" ".join(head))]
    lines += [""] + _sweep_table(sweeps, channels, top) + [""]
    by_training = sorted(sweeps, key=lambda p: -sweeps[p].episodes_seen.max())  # the most trained first
    lines += [_wrap(_sweep_bullet(p, sweeps[p], p == by_training[-1] and len(sweeps) > 1), bullet=True)
              for p in by_training]
    lines.append(_wrap(_paper_scale(every), bullet=True))
    return "\n".join(lines)


def _sweep_budget(profile: str, t: pd.DataFrame, cells: int, window: tuple[int, float] | None) -> str:
    """One sweep's budget and hardware, and how much of it finished (window: workers, minutes)."""
    steps = _one(t.steps, f"{profile} steps")
    text = (f"`{profile}`: {steps:,} steps x {_one(t.episodes_seen, f'{profile} episodes') // steps} episodes "
            f"per cell on {_on(_one(t.device, f'{profile} device'))}")
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
            for method in sorted(t.method.unique(), key=_method_order):
                cells = []
                for c in channels:
                    cell = grid.loc[(shots, method)].get(f"C={c}")
                    column = mean.xs(c, level="channels") if c in t.channels.values else pd.Series()
                    bold = profile == top and len(column) > 1 and column.get(method) == column.max()
                    cells.append("" if pd.isna(cell) else f"**{cell}**" if bold else cell)
                rows.append([str(shots), f"`{profile}` {SWEEP_NAMES.get(method, method)}", *cells])
    return _table(["shots", "method", *(f"C={c}" for c in channels)], rows)


def _sweep_bullet(profile: str, t: pd.DataFrame, least_training: bool) -> str:
    """What one sweep says about the paper's claim, from htlib.report's gaps and finding 1."""
    others = tuple(m for m in FINDING1_BASELINES if m in set(t.method))
    g = gaps(t, "ht-all", others)
    ways = _one(t.ways, "ways")
    status = findings({profile: t}, pd.DataFrame(), None, None, profile, ways).set_index("finding").loc[1, "status"]
    claim = CLAIM.get(status, "the sweep does not test the paper's claim")
    text = (f"`{profile}` ({_hardware(_one(t.device, 'device'))}, {_one(t.episodes_seen, 'episodes'):,} training "
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
                     + " and ".join(f"{_gap(r)} points ({r.shots}-shot)" for r in rows.itertuples()))
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


def _method_order(method: str) -> int:
    """htlib.methods' order (HT first, MAML last), unknown names after it."""
    return list(METHODS).index(method) if method in METHODS else len(METHODS)


def _against(method: str) -> str:
    return "generating the logits only" if method == "ht-logits" else method_label(method, short=True)


def _where(rows: pd.DataFrame) -> str:
    """Where HT-all is ahead / behind a baseline across C: 'ahead at C = 4, 6 (+15.9, +6.6) and behind at C = 16'."""
    ahead, behind, level = (rows[rows.verdict == v] for v in ("better", "worse", "no clear difference"))
    if len(ahead) == len(rows) or len(behind) == len(rows):
        return f"{'ahead' if len(ahead) else 'behind'} at every C"
    parts = []
    if len(ahead):
        parts.append(f"ahead at C = {_list(ahead.channels)} ({_list(_signed(100 * x) for x in ahead.gap)})")
    if len(level):
        parts.append(f"level at C = {_list(level.channels)}")
    if len(behind):
        parts.append(f"behind at C = {_list(behind.channels)}")
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def _paper_scale(table: pd.DataFrame) -> str:
    shots = sorted(table.shots.unique())
    paper = {s: PAPER_REPORTED.get((_one(table.dataset, "dataset"), _one(table.ways, "ways"), s), {}) for s in shots}
    labels = list(dict.fromkeys(label for numbers in paper.values() for label in numbers))
    parts = []
    for label in labels:
        numbers = " and ".join(f"{paper[s][label]}% ({s}-shot)" for s in shots if label in paper[s])
        after = f" after {PAPER_EPISODES / 1e6:g}M episodes" if label == "HT (paper)" else ""
        parts.append(f"{_paper_name(label)}: {numbers}{after}")
    return f"Paper, for scale ({PAPER_NOTES}): {'; '.join(parts)}."


def render_semi(table: pd.DataFrame, train_seconds: dict[tuple[str, int], float],
                other: pd.DataFrame | None = None) -> str:
    """Notebook 04's semi-supervised runs: setting, one accuracy table, and what the gains say.

    train_seconds: each arm's training time, by (method, U in training); a row's wall_seconds is
    its arm's training plus that one test (htlib.experiments.semi), so the total counts each
    training once.
    """
    arms = table.groupby(["method", "train_unlabelled"])
    seconds = sum(train_seconds[arm] + (rows.wall_seconds - train_seconds[arm]).sum() for arm, rows in arms)
    steps = _one(table.steps, "steps")
    trained_u = _one(table.train_unlabelled[table.train_unlabelled > 0], "U in training")
    per_step = _one(table.episodes_seen - table.base_episodes, "episodes") // steps
    lines = [_wrap(
        f"{_one(table.ways, 'ways')}-way {_one(table.shots, 'shots')}-shot {_dataset(_one(table.dataset, 'dataset'))}, "
        f"C = {_one(table.channels, 'C')}, seed {_one(table.seed, 'seed')}, `{_one(table.profile, 'profile')}`. Each "
        f"method's supervised run above is continued for {steps:,} steps x {per_step} episodes, once with "
        f"U = {trained_u} unlabelled samples per class in training, once without (the control), and tested with U "
        f"unlabelled samples per class ({_one(table.test_episodes, 'test episodes')} episodes each). All "
        f"{arms.ngroups} arms and {len(table)} tests: {seconds:,.0f} s of training and testing on "
        f"{_on(_one(table.device, 'device'))}. Test accuracy (%) ± 95% CI:"), ""]
    tests = sorted(set(zip(table.test_distractors, table.test_unlabelled)))
    header = ["method", "trained with"] + [f"U={u}" if d == 0 else f"U={u} + {d} distractor classes" for d, u in tests]
    cells = table.set_index(["method", "train_unlabelled", "test_distractors", "test_unlabelled"])
    rows = []
    for method in sorted(table.method.unique(), key=_method_order):
        for arm in sorted(table.train_unlabelled[table.method == method].unique(), reverse=True):
            keys = [(method, arm, d, u) for d, u in tests]
            rows.append([method_label(method, short=True), f"U = {arm}" if arm else "U = 0 (control)"]
                        + [f"{100 * cells.loc[k].test_accuracy:.1f} ± {100 * cells.loc[k].ci95:.1f}"
                           if k in cells.index else "" for k in keys])
    lines += _table(header, rows) + [""] + [_wrap(b, bullet=True) for b in _semi_bullets(table, trained_u, other)]
    return "\n".join(lines)


def _semi_bullets(table: pd.DataFrame, trained_u: int, other: pd.DataFrame | None) -> list[str]:
    ways, shots, profile = _one(table.ways, "ways"), _one(table.shots, "shots"), _one(table.profile, "profile")
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
            text += (f" (trained with U = {trained_u}, its best change against U = 0 is {_gap(best)} points, "
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
                 + " and ".join(f"{_gap(control.loc[m])} points ({method_label(m, short=True)})" for m in ht)
                 + f" at U = {top_u}.")
        bullets.append(text)
    distract = table[table.test_distractors > 0]
    for method in (m for m in control.index if m not in ht):
        text = (f"{method_label(method, short=True)} {_change(control.loc[method])} from U = 0 to U = {top_u} without ever "
                f"being trained on unlabelled samples")
        rows = distract[(distract.method == method) & (distract.train_unlabelled == 0)]
        for r in rows.itertuples():
            clean = table[(table.method == method) & (table.train_unlabelled == 0) & (table.test_distractors == 0)
                          & (table.test_unlabelled == r.test_unlabelled)].iloc[0]
            change = pd.Series({"gap": r.test_accuracy - clean.test_accuracy, "ci95": math.hypot(r.ci95, clean.ci95)})
            text += f", and {_change(change)} with {r.test_distractors} distractor classes (at U = {r.test_unlabelled})"
        bullets.append(text + ".")
    if other is not None and not other.empty:
        both = device_agreement(table, other)
        agree = int(both["within CI"].sum())
        count = f"all {len(both)}" if agree == len(both) else f"{agree} of {len(both)}"
        bullets.append(f"The same experiment on {_on(_one(other.device, 'device'))} (`{SEMI_OTHER}`) agrees with the "
                       f"{_hardware(_one(table.device, 'device'))} numbers within the combined CIs in {count} "
                       f"conditions.")
    return bullets


def render_gpu(log: str) -> str:
    """What the GPU job's log says: when and where it ran, the notebooks' times, the benchmark."""
    day = datetime.strptime(log.splitlines()[0].strip(), "%a %b %d %I:%M:%S %p %Z %Y").date()
    gpu = _hardware(_search(r"^GPU \d+: (.+?) \(UUID", log, "the GPU's name"))
    torch_version = _search(r"^torch (\S+) cuda", log, "the torch version")
    ran = re.findall(r"^notebooks/(\d+)_\S+: ran in ([\d.]+) s with \{'profile': '(\w+)', 'device': '(\w+)'\}",
                     log, re.MULTILINE)
    bench = {row["variant"]: row for row in (json.loads(line) for line in log.splitlines()
                                             if line.startswith("{") and '"variant"' in line)}
    text = (f"One {gpu} was lent to this project on {day.isoformat()}; `benchmarks/gpu_job.sh` ran there "
            f"(log: `{GPU_LOG}`, torch {torch_version}).")
    if ran:
        numbers = [n for n, *_ in ran]
        consecutive = [int(n) for n in numbers] == list(range(int(numbers[0]), int(numbers[0]) + len(numbers)))
        names = f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 2 and consecutive else _list(numbers)
        profile, device = (_one(pd.Series(column), what) for column, what in
                           zip(list(zip(*ran))[2:], ("profile", "device")))
        text += (f" Notebooks {names} ran at `{profile}` on {device.upper()} "
                 f"({', '.join(f'{seconds} s' for _, seconds, *_ in ran)}).")
    if {"batched", "per-episode loop"} <= set(bench):
        fast, slow = bench["batched"], bench["per-episode loop"]
        text += (f" `python -m htlib bench --device cuda` (same setting as below): batched "
                 f"**{fast['episodes_per_second']:.3g} episodes/s**, per-episode loop "
                 f"{slow['episodes_per_second']:.3g} episodes/s, **{fast['speedup']:.3g}x**; peak CUDA memory "
                 f"{fast['peak_memory_mib']:.0f} vs {slow['peak_memory_mib']:.0f} MiB.")
    text += " The `long` sweep above and the semi-supervised cross-check ran there too."
    if "04" not in [n for n, *_ in ran]:
        text += (" Notebook 04 was written after that run and has not been executed on CUDA; its training and tests "
                 "ran on CUDA through `python -m htlib semi`.")
    return _wrap(text)


def render_speed(tables: dict[str, pd.DataFrame]) -> str:
    """The training-step benchmark tables (results/bench_*.csv): one table per file and CPU model.
    Older files lack the CPU model, C, the median and the untuned setting: those cells stay empty."""
    parts = []
    # one table per machine: a file gathers the benches of every CPU the sessions ran on
    machines = [(name, cpu_table) for name, t in sorted(tables.items())
                for _, cpu_table in (t.groupby("cpu", sort=True) if "cpu" in t else [(None, t)])]
    for name, t in machines:
        ok = t[t["error"].isna()] if "error" in t else t
        device = _one(ok.device, "device")
        where = _on(device)
        if device == "cpu" and "cpu" in ok:
            where = f"{_one(ok.cpu, 'CPU model')} ({_one(ok.capability, 'CPU capability')})"
        days = sorted(pd.unique(t.date))
        parts.append(_wrap(
            f"`results/{name}`: `python -m htlib bench` on {where}, {_one(ok.threads, 'thread count')} threads, "
            f"torch {_one(ok.torch, 'torch version')}, {' to '.join(dict.fromkeys([days[0], days[-1]]))}. The "
            f"reference task (20-way 1-shot, 60 queries, all layers generated) at the C of each row. Each row: "
            f"{_one(ok.repeats, 'repeats')} blocks of timed steps in one process; episodes/s of the fastest block "
            f"(other work on the machine slows a block down, never up), then the median and slowest. \"% of "
            f"peak\" compares the achieved FLOP rate with a large matmul of the same dtype measured in the same "
            f"process. Settings: `old` is the step before the fast path, `loop` the same one episode at a time, "
            f"`untuned` the fast path without the CPU tuning (glibc's allocator defaults), `new` the default "
            f"fast path (episodes sampled on the device, multi-tensor AdamW, no per-step reads, the CPU "
            f"tuning), `2proc` the fast path split over two data-parallel processes with half the threads "
            f"each (the same gradient), `bf16` and `compile` add those switches (htlib.tools.bench). Memory: "
            f"{_one(ok.memory_kind, 'memory kind')}, divided by B."))

        def base_rate(r, setting):
            same = ok[(ok.setting == setting) & (ok.episodes_per_step == r.episodes_per_step)]
            if "channels" in ok:
                same = same[same.channels == r.channels]
            return same.episodes_per_second.iloc[0] if len(same) else None

        def cell(value, fmt):
            return "" if value is None or pd.isna(value) else format(value, fmt)

        rows = []
        for _, r in t.iterrows():
            channels = cell(r.get("channels"), ".0f")
            if isinstance(r.get("error"), str):
                rows.append([str(r.episodes_per_step), channels, f"`{r.setting}`", "failed: " + r.error]
                            + [""] * 9)
                continue
            speedups = [f"{r.episodes_per_second / rate:.2f}x" if rate else ""
                        for rate in (base_rate(r, "old"), base_rate(r, "untuned"))]
            rows.append([str(r.episodes_per_step), channels, f"`{r.setting}`", str(r.steps),
                         f"{r.episodes_per_second:,.0f}", cell(r.get("episodes_per_second_median"), ",.0f"),
                         cell(r.get("episodes_per_second_slowest"), ",.0f"), *speedups,
                         f"{r.gflop_per_episode:.3f}", f"{r.achieved_gflops:,.1f}", f"{100 * r.share_of_peak:.1f}%",
                         f"{r.memory_per_episode_mib:.2f}"])
        parts.append("\n".join(_table(["B", "C", "setting", "steps per block", "episodes/s", "median", "slowest",
                                        "vs old", "vs untuned", "GFLOP per episode", "GFLOP/s", "% of peak",
                                        "MiB per episode"], rows)))
    return "\n\n".join(parts)


def render_recipe(tables: dict[str, pd.DataFrame]) -> str:
    """The recipe study (results/recipe_<profile>_omniglot.csv): at each profile, the baseline and
    each arm's gap to it on the seeds they share, best first."""
    from htlib.experiments.recipe import BASELINE, recipe_gaps

    parts = []
    for profile, t in tables.items():
        base = t[t.arm == BASELINE]
        if base.empty:
            raise ReadmeError(f"results/recipe_{profile}_{DATASET}.csv has no baseline row")
        seeds = ", ".join(f"{100 * a:.1f}%" for a in base.test_accuracy)
        parts.append(_wrap(
            f"`results/recipe_{profile}_{DATASET}.csv`: {t.arm.nunique() - 1} arms against the baseline at the `{profile}` "
            f"budget, {_one(base.episodes, 'baseline episodes'):,} training episodes per run (20-way 1-shot, C = 8; "
            f"exceptions in the table), {len(t)} runs on {_list(_hardware(d) for d in sorted(t.device.unique()))}, "
            f"test accuracy on {get_profile(profile).test_episodes} fixed test episodes. The baseline (today's defaults) "
            f"scores {seeds} (seed{'s' if len(base) > 1 else ''} {_list(sorted(base.seed))}). The gap is each arm minus "
            f"the baseline on the seeds both have, in points with a 95% CI that holds the test episodes' noise only"
            + (f"; the baseline's two seeds alone differ by {100 * (base.test_accuracy.max() - base.test_accuracy.min()):.1f} "
               f"points, so a one-seed gap of that size is no finding." if len(base) > 1 else ".")))
        gaps = recipe_gaps(t).sort_values("gap", ascending=False)
        rows = [[f"`{g.arm}`", g.change, str(g.seeds), f"{100 * g.test_accuracy:.1f}", _gap(g), g.verdict]
                for g in gaps.itertuples()]
        parts.append("\n".join(_table(["arm", "change", "seeds", "test accuracy (%)", "gap (points)", "verdict"], rows)))
    return "\n\n".join(parts)


def render_fidelity(tables: dict[str, pd.DataFrame]) -> str:
    """The fidelity study (results/fidelity_<protocol>_quick_omniglot.csv): what the protocol and each
    of the reference's choices change, from htlib.summaries / htlib.report, and the table."""
    from htlib.report import fidelity_table
    from htlib.summaries import fidelity_summary

    if not tables:
        return "No fidelity run committed yet (`python -m htlib recipe --study fidelity --protocol paper`)."
    parts = [_wrap(f"`results/fidelity_<protocol>_{PROFILE}_{DATASET}.csv` ({_list(f'`{p}`' for p in tables)}): "
                   f"every run at the `{PROFILE}` budget, 20-way 1-shot, C = 8, test accuracy on "
                   f"{get_profile(PROFILE).test_episodes} fixed test episodes of its own protocol."),
             "\n".join(_wrap(line[2:], bullet=True) for line in fidelity_summary(tables, PROFILE).splitlines())]
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
                       f"{_signed(100 * gap)} ± {100 * r[f'{protocol} ci95']:.1f}")
        rows.append(row)
    parts.append("\n".join(_table(header, rows)))
    parts.append("In brackets: the seeds behind an accuracy (a gap uses the seeds the arm shares with the baseline).")
    return "\n\n".join(parts)


def render_campaign(campaigns: list[dict]) -> str:
    """Where the CPU campaign stands (htlib.campaign.status), against the paper's budget."""
    if not campaigns:
        return _wrap("No campaign started yet: `python -m htlib campaign --minutes M` trains one (protocol `paper` "
                     "by default) and resumes it at every later call.")
    rows = []
    for c in campaigns:
        best = "–" if c["best_val_accuracy"] is None else (
            f"{100 * c['best_val_accuracy']:.1f}% at {c['best_at_episodes']:,} episodes")
        tests = {shots: "–" if shots not in c["tests"] else
                 f"{100 * c['tests'][shots][0]:.1f} ± {100 * c['tests'][shots][1]:.1f}%" for shots in (1, 5)}
        final = "–" if c["result"] is None else f"{100 * c['result']['test_accuracy']:.1f} ± {100 * c['result']['ci95']:.1f}%"
        rows.append([f"`{c['name']}`", f"`{c['split_scheme']}`",
                     f"{c['episodes']:,} of {c['total_episodes']:,} ({100 * c['episodes'] / c['total_episodes']:.1f}%)",
                     best, tests[1], tests[5], final, f"{c['segments']} in {c['hours']:.1f} h", _list(c["cpus"])])
    return "\n".join(_table(["run", "split", "episodes trained", "best validation", "test now, 1-shot",
                              "test now, 5-shot", "final test", "segments", "CPUs"], rows))


def _search(pattern: str, text: str, what: str) -> str:
    found = re.search(pattern, text, re.MULTILINE)
    if not found:
        raise ReadmeError(f"{GPU_LOG}: {what} not found (pattern {pattern!r})")
    return found.group(1)


# ---- files and markers ----

def load(root: Path | None = None) -> Results:
    """Read every result file the README's sections need (of the project at `root`, by default this one)."""
    root = root or PROJECT_ROOT
    results = root / "results"

    def result_files(folder: str) -> list[dict]:
        return [read_result(f) for f in sorted((results / "runs" / folder).glob("*/result.json"))]

    notes = (root / PAPER_NOTES).read_text(encoding="utf-8")
    tasks = re.search(r"--num_task_evals=(\d+)", notes)
    if not tasks:
        raise ReadmeError(f"{PAPER_NOTES}: the paper's number of test tasks (--num_task_evals=N) not found")
    return Results(
        single_runs={r["method"]: r for r in result_files(PROFILE) if r["dataset"] == DATASET},
        sweeps={p: read_table(results / f"sweep_{p}_{DATASET}.csv", "sweep") for p in SWEEP_PROFILES},
        semi=read_table(results / f"semi_{PROFILE}_{DATASET}.csv", "semi"),
        semi_train_seconds={(r["method"], r["unlabelled"]): r["wall_seconds"] for r in result_files(f"{PROFILE}-semi")},
        semi_other=read_table(root / SEMI_OTHER, "semi"),
        gpu_log=(root / GPU_LOG).read_text(encoding="utf-8"),
        bench={f.name: read_table(f, "bench") for f in sorted(results.glob("bench_*.csv"))},
        recipe={p: read_table(results / f"recipe_{p}_{DATASET}.csv", "recipe") for p in RECIPE_PROFILES
                if (results / f"recipe_{p}_{DATASET}.csv").is_file()},
        fidelity={p: read_table(results / f"fidelity_{p}_{PROFILE}_{DATASET}.csv", "recipe") for p in PROTOCOLS
                  if (results / f"fidelity_{p}_{PROFILE}_{DATASET}.csv").is_file()},
        campaigns=campaign_status(results / "runs" / "campaign"),
        paper_test_tasks=int(tasks.group(1)))


def render(results: Results) -> dict[str, str]:
    """Every generated section of README.md, by marker name."""
    return {
        "single-runs": render_single_runs(results.single_runs, results.paper_test_tasks),
        "sweep": render_sweep(results.sweeps, results.gpu_log),
        "semi": render_semi(results.semi, results.semi_train_seconds, results.semi_other),
        "gpu": render_gpu(results.gpu_log),
        "quick-budget": render_budget(results.single_runs),
        "speed": render_speed(results.bench),
        "recipe": render_recipe(results.recipe),
        "fidelity": render_fidelity(results.fidelity),
        "campaign": render_campaign(results.campaigns),
    }


def markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name} -->", f"<!-- /results:{name} -->"


def fill(text: str, sections: dict[str, str]) -> str:
    """`text` with each section's body replaced between its two markers (each exactly once)."""
    for name, body in sections.items():
        start, end = markers(name)
        for marker in (start, end):
            if text.count(marker) != 1:
                raise ReadmeError(f"README.md holds the marker {marker} {text.count(marker)} times; each result "
                                  f"section needs exactly one {start} ... {end} pair")
        head, rest = text.split(start)
        if end not in rest:
            raise ReadmeError(f"README.md: {end} comes before {start}")
        text = head + start + "\n\n" + body.strip() + "\n\n" + end + rest.split(end)[1]
    return text


def diff(old: str, new: str, lines: int = 40) -> str:
    """The first `lines` lines of a unified diff of the README as it is against as rendered."""
    out = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "README.md (as it is)",
                                    "README.md (from results/)", n=0, lineterm=""))
    return "\n".join(out[:lines] + ([f"... {len(out) - lines} more lines"] if len(out) > lines else []))


def update(readme: Path | None = None, check: bool = False) -> int:
    """Rewrite the result sections of `readme` (default: the project's README.md) from the project's
    result files, or with check only compare. Returns 0 when the README agrees with the files, or
    has been made to; 1, after a short diff, when check finds a difference."""
    readme = readme or PROJECT_ROOT / "README.md"
    old = readme.read_text(encoding="utf-8")
    new = fill(old, render(load()))
    if new == old:
        print(f"{readme.name}: the result sections agree with results/")
        return 0
    if not check:
        write_text_atomic(readme, new)
        print(f"{readme.name}: result sections rewritten from results/")
        return 0
    print(diff(old, new))
    print(f"{readme.name} disagrees with results/: run `make readme`")
    return 1
