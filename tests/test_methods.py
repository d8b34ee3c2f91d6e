"""htlib.methods: the registry's capabilities are true of the models, and lists of methods are queries of it."""

from __future__ import annotations

import pytest
import torch

from htlib.config import TrainConfig
from htlib.data import EpisodeSampler, load_split
from htlib.errors import ConfigError
from htlib.evaluate import episode_logits
from htlib.methods import METHODS, build_model, compared_methods, method_name, method_settings, methods_that

WAYS = 5


def _model(name: str):
    torch.manual_seed(0)
    cfg = TrainConfig(**method_settings(name), dataset="synthetic", ways=WAYS, channels=4)
    assert method_name(cfg) == name
    split = load_split("synthetic", "train")
    return build_model(cfg, split.image_shape), split


@pytest.mark.parametrize("name", list(METHODS))
def test_each_capability_is_true_of_the_model(name):
    method = METHODS[name]
    model, split = _model(name)
    model.train()  # BatchNorm on the batch, as every method trains and tests
    episode = EpisodeSampler(split, WAYS, 1, 2, unlabelled=2, batch_size=2, seed=3).sample()
    with_u, without_u = (episode_logits(model, episode, use_unlabelled=u) for u in (True, False))
    assert (not torch.allclose(with_u, without_u)) == method.uses_unlabelled, "uses_unlabelled"
    assert hasattr(model, "generators") == method.generates_layers, "generates_layers"
    assert (getattr(model, "first_order", True) is False) == method.second_order, "second_order"
    wider = EpisodeSampler(split, WAYS + 2, 1, 2, batch_size=1, seed=3).sample()
    try:
        logits = episode_logits(model, wider)
    except (ConfigError, ValueError, IndexError, RuntimeError):
        logits = None
    assert (logits is not None and logits.shape[-1] == WAYS + 2) == method.any_ways, "any_ways"


def test_lists_of_methods_are_queries_of_the_registry():
    from htlib.experiments.semi import METHODS as SEMI
    from htlib.experiments.sweep import SweepSpec

    assert SEMI == methods_that(uses_unlabelled=True) == ["ht-all", "ht-logits", "protonet-softkmeans"]
    assert compared_methods() == ["ht-all", "ht-logits", "protonet", "maml"]
    quick = {cell.config.resolved().method for cell in SweepSpec(profile="quick", shots=[1], channels=[8]).cells()}
    assert {method_name(cell.config) for cell in SweepSpec(profile="quick", shots=[1], channels=[8]).cells()} == \
        set(compared_methods("fomaml-1step")) and quick == {"ht", "protonet", "maml"}
    with pytest.raises(ConfigError, match="Unknown method capabilities"):
        methods_that(flies=True)
    with pytest.raises(ConfigError, match="Unknown method 'reptile'"):
        compared_methods("reptile")


def test_an_unknown_method_family_is_an_error_not_a_maml():
    cfg = TrainConfig(dataset="synthetic", ways=WAYS, channels=4)
    cfg.method = "reptile"  # set after the config checked itself: build_model must refuse it too
    with pytest.raises(ConfigError, match="Unknown method family 'reptile'"):
        build_model(cfg, (1, 28, 28))
