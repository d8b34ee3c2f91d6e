"""Prose written from results: the one writer of every sentence whose truth depends on numbers.

The notebooks' summaries (`*_summary`) and the README's result sections (`*_section`, assembled by
htlib.tools.readme) come from here, computed from the files in `results/`, so the prose cannot
drift from the files. Interpretation that holds whatever the numbers are stays in the notebooks'
own Markdown. One module per experiment; `text` holds the formats they share.
"""

from htlib.summaries.campaign import campaign_section, campaign_summary
from htlib.summaries.grading import grading_section
from htlib.summaries.machines import gpu_section, speed_section, step_parts_section
from htlib.summaries.recipe import (confirmation_summary, fidelity_budget, fidelity_section, fidelity_summary,
                                    recipe_section, recipe_summary)
from htlib.summaries.runs import budget_section, single_run_summary, single_runs_section
from htlib.summaries.semi import KEYS_SEMI, device_agreement, semi_findings, semi_section
from htlib.summaries.sweep import sweep_findings, sweep_section
from htlib.summaries.text import ProseError

__all__ = ["KEYS_SEMI", "ProseError", "budget_section", "campaign_section", "campaign_summary", "confirmation_summary",
           "device_agreement", "fidelity_budget", "fidelity_section", "fidelity_summary", "gpu_section",
           "grading_section", "recipe_section", "recipe_summary", "semi_findings", "semi_section", "single_run_summary",
           "single_runs_section", "speed_section", "step_parts_section", "sweep_findings", "sweep_section"]
