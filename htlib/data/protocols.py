"""Protocols: how episodes are drawn from Omniglot, as a single name.

A protocol fixes the task's data side, the part a reported accuracy depends on besides the model:
which characters train and which test, whether test classes are rotated copies, and whether a
query may repeat a support image.

- "vinyals" (this project's default, the field's standard): Vinyals et al.'s split files, 1028
  training and 423 test characters, the test alphabets unseen in training but one (Gurmukhi: 4 of
  its characters are in training), each rotated by 0/90/180/270 degrees into 4 classes; queries
  drawn without overlap with the support set.
- "paper" (the authors' own code, docs/paper.md section 2): the 1623 characters shuffled with
  seed 2022 and cut 1150 / 50 / 423, so test characters come from alphabets seen in training; test
  classes unrotated (training rotates each class by a random quarter turn per episode); support
  and queries drawn independently, so a query may be a support image (1 in 20 at 1-shot).

A model trained on the "paper" split has seen Vinyals' test characters: score it on its own
protocol only.
"""

from __future__ import annotations

from htlib.errors import ConfigError

# protocol -> the TrainConfig settings that make it
PROTOCOLS: dict[str, dict] = {
    "vinyals": {"split_scheme": "vinyals", "independent_queries": False, "augment_rotations": True},
    "paper": {"split_scheme": "paper", "independent_queries": True, "augment_rotations": True},
}


def protocol_settings(name: str) -> dict:
    """The TrainConfig settings of protocol `name` (a copy)."""
    try:
        return dict(PROTOCOLS[name])
    except KeyError:
        raise ConfigError(f"Unknown protocol {name!r}; choose one of {list(PROTOCOLS)}") from None


def protocol_of(cfg) -> str | None:
    """The protocol a config's settings make, or None when they match no named protocol."""
    return next((name for name, settings in PROTOCOLS.items()
                 if all(getattr(cfg, k) == v for k, v in settings.items())), None)
