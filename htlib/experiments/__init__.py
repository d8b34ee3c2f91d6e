"""Experiments: grids of runs whose results become one tidy table each.

- `sweep`: every (method, CNN size C, shots, seed) cell of the paper's CNN-size comparison
  (notebook 03), `results/sweep_<profile>_<dataset>.csv`;
- `semi`: supervised runs continued with and without unlabelled support samples, each tested at
  several numbers of them (notebook 04), `results/semi_<profile>_<dataset>.csv`;
- `recipe`: the HT's training recipe, a baseline and arms that each change one thing, all on the
  same number of training episodes, `results/recipe_<profile>_<dataset>.csv`.

Every run is made by `htlib.runs.make_run` (one rule for its folder) with its method from
`htlib.methods`; finished runs are never trained again, so an experiment can be stopped and resumed.
"""

from htlib.experiments.recipe import RecipeSpec, recipe_gaps, run_recipe
from htlib.experiments.semi import SemiSpec, run_semi
from htlib.experiments.sweep import SweepSpec, run_sweep

__all__ = ["RecipeSpec", "SemiSpec", "SweepSpec", "recipe_gaps", "run_recipe", "run_semi", "run_sweep"]
