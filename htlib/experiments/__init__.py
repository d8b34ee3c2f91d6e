"""Experiments: grids of runs whose results become one tidy table each.

- `sweep`: every (method, CNN size C, shots, seed) cell of the paper's CNN-size comparison
  (notebook 03), `results/sweep_<profile>_<dataset>.csv`;
- `semi`: supervised runs continued with and without unlabelled support samples, each tested at
  several numbers of them (notebook 04), `results/semi_<profile>_<dataset>.csv`;
- `recipe`: the HT's training recipe, a baseline and arms that each change one thing, all on the
  same number of training episodes, `results/recipe_<profile>_<dataset>.csv`; with
  `study="fidelity"`, the departures from the reference;
- the campaign (htlib.campaign): the paper's 4M episodes, trained a session at a time.

Every run is made by `htlib.runs.make_run` (one rule for its folder) with its method from
`htlib.methods`; finished runs are never trained again, so an experiment can be stopped and resumed.
"""

import pandas as pd

from htlib.campaign import CampaignSpec, campaign_tests
from htlib.campaign import status as campaign_status
from htlib.experiments import recipe, semi, sweep
from htlib.experiments.recipe import (ARMS, FIDELITY_ARMS, RECIPE_BUDGETS, RecipeSpec, arms_to_draw, fidelity_table,
                                     protocol_gap, recipe_gaps, run_recipe)
from htlib.experiments.semi import SEMI_BUDGETS, SemiSpec, run_semi
from htlib.experiments.sweep import SWEEP_BUDGETS, SweepSpec, run_sweep


_COLLECTORS = {SweepSpec: sweep.collect, SemiSpec: semi.collect, RecipeSpec: recipe.collect}


def collect(spec: SweepSpec | SemiSpec | RecipeSpec) -> pd.DataFrame:
    """The tidy table of an experiment's finished runs, read from their folders (nothing trains)."""
    if type(spec) not in _COLLECTORS:
        raise TypeError(f"collect() takes a SweepSpec, SemiSpec or RecipeSpec, got {type(spec).__name__}")
    return _COLLECTORS[type(spec)](spec)


__all__ = ["ARMS", "CampaignSpec", "FIDELITY_ARMS", "RECIPE_BUDGETS", "RecipeSpec", "SEMI_BUDGETS", "SWEEP_BUDGETS",
           "SemiSpec", "SweepSpec", "arms_to_draw", "campaign_status", "campaign_tests", "collect", "fidelity_table",
           "protocol_gap", "recipe_gaps", "run_recipe", "run_semi", "run_sweep"]
