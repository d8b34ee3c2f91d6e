"""The number formats and sentence pieces every summary shares: signed gaps with their CI, the
one value a column holds, hardware names, wrapped Markdown paragraphs and tables."""

from __future__ import annotations

import re
import textwrap

import pandas as pd

from htlib.errors import UserError
from htlib.methods import METHODS

PAPER_NOTES = "docs/paper.md"  # the project's notes on the paper, which prose cites for its numbers
VERB = {"better": "beats", "worse": "trails", "no clear difference": "does not clearly differ from"}


class ProseError(UserError, ValueError):
    """Result files that do not hold what a sentence states (e.g. several budgets where it names one),
    or README.md's markers not as the rendering needs them."""


def signed(points: float) -> str:
    """'+2.4' or '−9.5' with a true minus sign, as the README's prose writes them; never '−0.0'."""
    return f"{round(points, 1) + 0.0:+.1f}".replace("-", "−")


def gap_text(row) -> str:
    """A difference of two accuracies (fractions) in points with its 95% CI: '+2.4 ± 0.8'."""
    return f"{signed(100 * row.gap)} ± {100 * row.ci95:.1f}"


def change_text(row) -> str:
    """'gains +6.5 ± 0.8 points' or 'loses 0.9 ± 0.8 points'."""
    if round(100 * row.gap, 1) >= 0:
        return f"gains {gap_text(row)} points"
    return f"loses {-100 * row.gap:.1f} ± {100 * row.ci95:.1f} points"


def count(n: int, noun: str) -> str:
    """'1 thread', '2 threads': a number with its noun, plural when it is not one."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def one(values: pd.Series, what: str):
    """The one value a column holds: the README states one budget, one seed, ... per table."""
    unique = sorted(pd.unique(values))
    if len(unique) != 1:
        raise ProseError(f"{what}: the results hold several values {unique}, the README's sentence states one")
    return unique[0].item() if hasattr(unique[0], "item") else unique[0]


def hardware(device: str) -> str:
    """'CPU', or a GPU's model: 'NVIDIA H100 80GB HBM3' -> 'H100'."""
    return "CPU" if device == "cpu" else device.removeprefix("NVIDIA ").split()[0]


def on(device: str) -> str:
    return "the project's CPU" if device == "cpu" else f"one {hardware(device)}"


def dataset_name(name: str) -> str:
    return {"omniglot": "Omniglot", "miniimagenet": "miniImageNet"}.get(name, name)


def paper_name(label: str) -> str:
    """PAPER_REPORTED's 'MAML++, C = 64 (paper)' -> 'MAML++ with C = 64'."""
    return label.removesuffix(" (paper)").replace(", ", " with ")


def listing(items) -> str:
    return ", ".join(str(i) for i in items)


def wrap(text: str, bullet: bool = False) -> str:
    """Prose wrapped at 100 characters as the README's hand-written paragraphs are (a bullet: '- ',
    then indented), so that a regenerated section reads like the rest of the file's source. '± 0.8',
    'C = 4' and '20 s' stay on one line."""
    text = re.sub(r" ± | = |(?<=\d) (?=s\b|min\b|MiB\b)", lambda m: m.group().replace(" ", "\0"), text)
    return textwrap.fill(("- " if bullet else "") + text, width=100, subsequent_indent="  " if bullet else "",
                         break_long_words=False, break_on_hyphens=False).replace("\0", " ")


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + ["| " + " | ".join(r) + " |"
                                                                             for r in rows]


def method_order(method: str) -> int:
    """htlib.methods' order (HT first, MAML last), unknown names after it."""
    return list(METHODS).index(method) if method in METHODS else len(METHODS)


# ---- pieces about result rows and runs ----


def devices(table: pd.DataFrame) -> str:
    return ", ".join(sorted(table["device"].astype(str).unique()))


def run_task(r: dict) -> str:
    return (f"{dataset_name(r['dataset'])} {r['ways']}-way {r['shots']}-shot, C={r['channels']}, seed {r['seed']}")


def run_budget(r: dict) -> str:
    return f"{r['steps']:,} steps x {r['episodes_seen'] // r['steps']} episodes"
