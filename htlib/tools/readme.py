"""README.md's result sections, rendered from the files in `results/`: layout only.

Each result section sits between `<!-- results:NAME -->` and `<!-- /results:NAME -->`, and
`python -m htlib readme` (`make readme`) rewrites it from the files; `--check` and
tests/test_readme.py fail when the README and the files disagree. Which files feed which section
is decided here (`load`, `render`); every sentence is written by htlib.summaries, the same functions
the notebooks' summaries come from.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from htlib.campaign import status as campaign_status
from htlib.data.paths import PROJECT_ROOT
from htlib.data.protocols import PROTOCOLS
from htlib.schemas import read_result, read_table
from htlib.summaries import (budget_section, campaign_section, fidelity_budget, fidelity_section, gpu_section,
                             grading_section, recipe_section, semi_section, single_runs_section, speed_section,
                             step_parts_section, sweep_section)
from htlib.summaries.text import PAPER_NOTES, ProseError
from htlib.utils import write_text_atomic

PROFILE, DATASET = "quick", "omniglot"  # the single runs and the semi-supervised experiment
SWEEP_PROFILES = ("quick", "long")
RECIPE_PROFILES = ("quick", "long")  # the study, then its confirmation at a longer budget
FIDELITY_PROFILES = ("quick", "long")  # every arm, then the best candidates at a longer budget
GPU_LOG = "results/gpu/gpu_job_h100.log"
SEMI_OTHER = "results/gpu/semi_quick_omniglot_h100.csv"  # the semi-supervised runs again, on a GPU
ReadmeError = ProseError  # README.md's markers or a result file not as the sections need them


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
    step_parts: dict[str, pd.DataFrame]  # `python -m htlib bench --parts --out` tables, by file name
    grading: dict[str, pd.DataFrame]  # `python -m htlib.course time-class --out` tables, by file name
    recipe: dict[str, pd.DataFrame]  # the recipe study's tables, by profile (those that exist)
    fidelity: dict[str, dict[str, pd.DataFrame]]  # the fidelity study's tables by profile, then protocol (those that exist)
    campaigns: list[dict]  # htlib.campaign.status of results/runs/campaign
    paper_test_tasks: int  # test tasks behind the paper's numbers
    notebooks: list[str]  # the numbers of the project's notebooks, "01", ...


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
        step_parts={f.name: read_table(f, "step_parts") for f in sorted(results.glob("step_parts_*.csv"))},
        grading={f.name: read_table(f, "grading") for f in sorted(results.glob("grading_*.csv"))},
        recipe={p: read_table(results / f"recipe_{p}_{DATASET}.csv", "recipe") for p in RECIPE_PROFILES
                if (results / f"recipe_{p}_{DATASET}.csv").is_file()},
        fidelity={profile: {p: read_table(results / f"fidelity_{p}_{profile}_{DATASET}.csv", "recipe") for p in PROTOCOLS
                            if (results / f"fidelity_{p}_{profile}_{DATASET}.csv").is_file()}
                  for profile in FIDELITY_PROFILES},
        campaigns=campaign_status(results / "runs" / "campaign"),
        paper_test_tasks=int(tasks.group(1)),
        notebooks=sorted(p.name[:2] for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb")))


def render(results: Results) -> dict[str, str]:
    """Every generated section of README.md, by marker name."""
    return {
        "single-runs": single_runs_section(results.single_runs, results.paper_test_tasks),
        "sweep": sweep_section(results.sweeps, results.gpu_log),
        "semi": semi_section(results.semi, results.semi_train_seconds, results.semi_other, SEMI_OTHER),
        "gpu": gpu_section(results.gpu_log, GPU_LOG, results.notebooks, _also_on_the_gpu(results)),
        "quick-budget": budget_section(results.single_runs),
        "speed": "\n\n".join(filter(None, [speed_section(results.bench),
                                              step_parts_section(results.step_parts)])),
        "recipe": recipe_section(results.recipe, DATASET),
        "fidelity": _fidelity(results.fidelity),
        "campaign": campaign_section(results.campaigns),
        "grading": grading_section(results.grading),
    }


def _fidelity(by_profile: dict[str, dict[str, pd.DataFrame]]) -> str:
    """One fidelity section per profile with runs; the budget's share under the longest."""
    shown = [profile for profile, tables in by_profile.items() if tables]
    if not shown:
        return fidelity_section({}, PROFILE, DATASET)
    budget = fidelity_budget(by_profile)
    return "\n\n".join(fidelity_section(by_profile[p], p, DATASET, budget if p == shown[-1] else None) for p in shown)


def _also_on_the_gpu(results: Results) -> list[str]:
    """The committed results that came from the GPU of the job's log, as phrases."""
    gpu = re.search(r"^GPU \d+: (.+?) \(UUID", results.gpu_log, re.MULTILINE)
    if not gpu:
        return []
    here = lambda table: not table.empty and (table.device == gpu.group(1)).all()  # noqa: E731
    phrases = [f"the `{p}` sweep above" for p, t in results.sweeps.items() if here(t)]
    if here(results.semi_other):
        phrases.append("the semi-supervised cross-check (notebook 04's runs, `python -m htlib semi`)")
    return phrases


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
