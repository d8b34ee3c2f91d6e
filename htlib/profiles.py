"""Named profiles: how much compute a notebook or a training run spends.

- ``ci``: seconds to a minute per notebook on 2 CPU cores; proves the code runs.
- ``quick``: a CPU run (minutes) that shows the paper's effects at reduced scale; its sweep
  (notebook 03, 48 cells) fits in about 90 minutes on 2 CPU cores.
- ``long``: 7-13 times the quick budget; its sweep is meant for a GPU (minutes there).
- ``paper``: the full recipe, sized for a GPU.
- ``gpu``: the headline runs on one GPU: the paper's 4M episodes, B = 64, with the HT options the
  recipe study recommends (`RECOMMENDED_HT_OPTIONS`).
- ``campaign``: the paper's 4M episodes at B = 16 on the CPU, trained a session at a time
  (`python -m htlib campaign`, htlib.campaign).

A profile only sets defaults; every field can still be overridden one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from htlib.errors import ConfigError

# The HT options the recipe study recommends (htlib.experiments.recipe, notebook 06): the changes
# that beat the baseline with two seeds at `quick` and again at the `long` budget. The `gpu`
# profile trains with them. None so far: the one candidate that held over two seeds at quick
# (label_dim 64) did not beat the baseline at long (results/recipe_long_omniglot.csv).
RECOMMENDED_HT_OPTIONS: dict = {}


@dataclass(frozen=True)
class Profile:
    name: str
    train_steps: int  # optimizer steps
    episodes_per_step: int  # B, episodes batched in one step
    val_every: int  # steps between validations
    val_episodes: int  # validation episodes each time
    test_episodes: int  # test episodes for the final accuracy and its 95% CI
    description: str
    # Budget of one cell of a sweep (notebook 03), where dozens of runs must share the time.
    sweep_steps: int = 0
    sweep_episodes_per_step: int = 0
    # The MAML variant of the sweep: second order with 5 inner steps costs 5-17 s per step at
    # 5-shot on 2 CPU cores, more than all other methods together, so CPU profiles use first order.
    sweep_maml: str = "maml"
    # Semi-supervised runs (notebook 04): extra training of the profile's supervised run, with
    # and without unlabelled samples.
    semi_steps: int = 0
    semi_episodes_per_step: int = 0
    # The recipe study (htlib.experiments.recipe): training episodes per arm, the same for every
    # arm, and the baseline's B; an arm with another B takes recipe_episodes / B steps.
    recipe_episodes: int = 0
    recipe_episodes_per_step: int = 0
    # HT options of this profile's HT runs (a config's own model_options win); other methods ignore them.
    ht_options: dict = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", train_steps=20, episodes_per_step=4, val_every=10, val_episodes=32,
                  test_episodes=64, description="smoke scale: proves the code runs, numbers mean nothing",
                  sweep_steps=4, sweep_episodes_per_step=2, sweep_maml="fomaml-1step",
                  semi_steps=4, semi_episodes_per_step=2, recipe_episodes=8, recipe_episodes_per_step=2),
    "quick": Profile("quick", train_steps=3000, episodes_per_step=16, val_every=250, val_episodes=160,
                     test_episodes=600, description="reduced-scale CPU run that shows the effects",
                     # sized from results/step_costs_cpu.csv so that the 48-cell sweep fits ~90 min
                     sweep_steps=300, sweep_episodes_per_step=4, sweep_maml="fomaml-1step",
                     semi_steps=300, semi_episodes_per_step=8,
                     # the budget of the quick single run (3,000 steps x 16), arm by arm
                     recipe_episodes=48_000, recipe_episodes_per_step=16),
    "long": Profile("long", train_steps=20_000, episodes_per_step=16, val_every=1000, val_episodes=320,
                    test_episodes=600, description="7-13x quick; its sweep is sized for one GPU",
                    sweep_steps=1000, sweep_episodes_per_step=16, sweep_maml="maml",
                    semi_steps=2000, semi_episodes_per_step=16,
                    recipe_episodes=320_000, recipe_episodes_per_step=16),
    "paper": Profile("paper", train_steps=100_000, episodes_per_step=32, val_every=2000,
                     val_episodes=500, test_episodes=1000, description="full recipe, sized for a GPU",
                     sweep_steps=100_000, sweep_episodes_per_step=32,
                     semi_steps=20_000, semi_episodes_per_step=32,
                     recipe_episodes=3_200_000, recipe_episodes_per_step=32),
    # The recipe study found that the HT needs optimizer steps more than episodes (B = 64 at the same
    # episodes, hence 1/4 of the steps, loses to B = 16), and on a GPU a step costs about the same at
    # B = 16 and 64 (bound by the host), so B = 64 buys four times the episodes per step.
    "gpu": Profile("gpu", train_steps=62_500, episodes_per_step=64, val_every=2500, val_episodes=500,
                   test_episodes=1000, description="the paper's 4M episodes, recommended recipe; one GPU",
                   sweep_steps=5_000, sweep_episodes_per_step=64, sweep_maml="maml",
                   semi_steps=5_000, semi_episodes_per_step=64,
                   recipe_episodes=1_000_000, recipe_episodes_per_step=64,
                   ht_options=RECOMMENDED_HT_OPTIONS),
    # The CPU campaign (htlib.campaign): the paper's 4M episodes at the recipe's B = 16, trained
    # session after session on the CPU; validated every 40,000 episodes.
    "campaign": Profile("campaign", train_steps=250_000, episodes_per_step=16, val_every=2500, val_episodes=500,
                        test_episodes=1000, description="the paper's 4M episodes at B = 16, resumed across sessions"),
}


def get_profile(name: str) -> Profile:
    """Look a profile up by name, with an error that lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"Unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
