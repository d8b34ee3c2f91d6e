"""Named profiles: how much compute a notebook or a training run spends.

- ``ci``: seconds to a minute per notebook on 2 CPU cores; proves the code runs.
- ``quick``: a CPU run (minutes) that shows the paper's effects at reduced scale.
- ``paper``: the full recipe, sized for a GPU.

A profile only sets defaults; every field can still be overridden one by one.
"""

from __future__ import annotations

from dataclasses import dataclass


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


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", train_steps=20, episodes_per_step=4, val_every=10, val_episodes=32,
                  test_episodes=64, description="smoke scale: proves the code runs, numbers mean nothing",
                  sweep_steps=4, sweep_episodes_per_step=2),
    "quick": Profile("quick", train_steps=3000, episodes_per_step=16, val_every=250, val_episodes=160,
                     test_episodes=600, description="reduced-scale CPU run that shows the effects",
                     # provisional: not yet timed against the 90-minute target of the full sweep
                     sweep_steps=600, sweep_episodes_per_step=8),
    "paper": Profile("paper", train_steps=100_000, episodes_per_step=32, val_every=2000,
                     val_episodes=500, test_episodes=1000, description="full recipe, sized for a GPU",
                     sweep_steps=100_000, sweep_episodes_per_step=32),
}


def get_profile(name: str) -> Profile:
    """Look a profile up by name, with an error that lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"Unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
