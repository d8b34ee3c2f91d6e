"""htlib.methods: the registry's capabilities are true of the models, and lists of methods are queries of it."""

from __future__ import annotations

import pytest
import torch

from htlib.config import TrainConfig
from htlib.data import EpisodeSampler, load_split
from htlib.errors import ConfigError
from htlib.evaluate import episode_logits
from htlib.methods import (METHODS, build_model, compared_methods, get_method, method_label, methods_that,
                           upgrade_stored_config)

WAYS = 5


def _model(name: str):
    torch.manual_seed(0)
    cfg = TrainConfig(method=name, dataset="synthetic", ways=WAYS, channels=4)
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
    quick = {cell.config.method for cell in SweepSpec(profile="quick", shots=[1], channels=[8]).cells()}
    assert quick == set(compared_methods("fomaml-1step"))
    with pytest.raises(ConfigError, match="Unknown method capabilities"):
        methods_that(flies=True)
    with pytest.raises(ConfigError, match="Unknown method 'reptile'"):
        compared_methods("reptile")


def test_an_unknown_method_is_an_error_not_a_maml():
    cfg = TrainConfig(dataset="synthetic", ways=WAYS, channels=4)
    cfg.method = "reptile"  # set after the config checked itself: build_model must refuse it too
    with pytest.raises(ConfigError, match="Unknown method 'reptile'"):
        build_model(cfg, (1, 28, 28))
    with pytest.raises(ConfigError, match="Unknown method 'ht'"):  # a family name, as configs once held
        TrainConfig(method="ht").resolved()


def test_ht_n_is_the_ht_writing_its_last_n_conv_layers():
    model = build_model(TrainConfig(method="ht-2", ways=WAYS).resolved(), (1, 28, 28))
    assert list(model.generators) == ["conv2", "conv3", "logits"]
    assert method_label("ht-2") == "HT, last 2 conv layers + logits generated" and not get_method("ht-2").compared
    assert get_method("ht-2").uses_unlabelled and get_method("ht-2").generates_layers


def test_model_options_refine_a_method_but_cannot_make_it_another():
    cfg = TrainConfig(method="fomaml-1step", model_options={"inner_lr": 0.2}).resolved()
    assert build_model(cfg, (1, 28, 28)).inner_steps == 1  # the name's options, refined
    for method, options, other in [("ht-all", {"generate": "logits"}, "generate"),
                                   ("fomaml", {"first_order": False}, "first_order")]:
        with pytest.raises(ConfigError, match=f"model_options \\['{other}'\\] would change what method '{method}' is"):
            TrainConfig(method=method, model_options=options).resolved()


@pytest.mark.parametrize("stored, name, options", [
    ({"method": "ht", "generate": "all", "model_options": {"heads": 1}}, "ht-all", {"heads": 1}),
    ({"method": "ht", "generate": "logits", "model_options": {}}, "ht-logits", {}),
    ({"method": "ht", "generate": 2, "model_options": {}}, "ht-2", {}),
    ({"method": "protonet", "generate": "all", "model_options": {}}, "protonet", {}),
    ({"method": "protonet", "generate": "all", "model_options": {"soft_kmeans_steps": 1}}, "protonet-softkmeans", {}),
    ({"method": "maml", "generate": "all", "model_options": {}}, "maml", {}),
    ({"method": "maml", "generate": "all", "model_options": {"first_order": True}}, "fomaml", {}),
    ({"method": "maml", "generate": "all", "model_options": {"first_order": True, "inner_steps": 1}},
     "fomaml-1step", {}),
    ({"method": "maml", "generate": "all", "model_options": {"first_order": True, "inner_steps": 3}}, "fomaml",
     {"inner_steps": 3}),
])
def test_a_config_stored_before_methods_had_names_reads_as_its_method(stored, name, options):
    upgraded = upgrade_stored_config({**stored, "seed": 3})
    assert upgraded == {"method": name, "model_options": options, "seed": 3}
    assert upgrade_stored_config(upgraded) == upgraded  # today's form passes unchanged
    TrainConfig(**upgraded).resolved()


def test_a_committed_run_stored_before_methods_had_names_loads_as_its_method(omniglot_data_dir):
    """results/runs/quick/*/config.json were written with method = the family and `generate`."""
    from pathlib import Path

    from htlib.train import load_trained

    root = Path(__file__).resolve().parents[1]
    for name in ("ht-logits", "maml"):
        folder = root / "results" / "runs" / "quick" / f"{name}-omniglot-20w1s-u0-c8-seed0"
        if "generate" not in (folder / "config.json").read_text():
            pytest.skip("the committed configs have been rewritten in today's form")
        model, cfg = load_trained(folder, "cpu", str(omniglot_data_dir))
        assert cfg.method == name and cfg.model_options == {}


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.starts_from])
def test_a_method_that_starts_from_another_has_that_ones_parameters(name):
    """Notebook 04 loads the supervised run of `starts_from` into this method's model."""
    mine, _ = _model(name)
    theirs, _ = _model(METHODS[name].starts_from)
    assert {k: v.shape for k, v in mine.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
