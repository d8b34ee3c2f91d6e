"""The methods this project compares, in one table: name -> settings, model, step cost, label.

Every consumer reads this table: training (which model to build), the experiments (which
settings a named method has, and which methods they compare: `methods_that(uses_unlabelled=True)`,
`compared_methods()`), the result tables (`method_name` of a config), the benchmarks and the
notebooks (labels). tests/test_methods.py checks each capability against the model itself. A method name is also what `method_name` returns for its settings, so a
table row and a result row always agree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from torch import nn

from htlib.errors import ConfigError

if TYPE_CHECKING:
    from htlib.config import TrainConfig
    from htlib.models import CNNSpec


# The model builders: (config, the target CNN's shape) -> the model. Methods of one family share one.
def _hypertransformer(cfg: "TrainConfig", spec: "CNNSpec") -> nn.Module:
    from htlib.models import HTConfig, HyperTransformer

    return HyperTransformer(HTConfig(cnn=spec, generate=cfg.generate, max_ways=cfg.ways, **cfg.model_options))


def _protonet(cfg: "TrainConfig", spec: "CNNSpec") -> nn.Module:
    from htlib.models import ProtoNet

    return ProtoNet(spec, **cfg.model_options)


def _maml(cfg: "TrainConfig", spec: "CNNSpec") -> nn.Module:
    from htlib.models import MAML

    return MAML(spec, max_ways=cfg.ways, **cfg.model_options)


@dataclass(frozen=True)
class Method:
    name: str  # the name in result tables and on the command line
    label: str  # how figures and tables call it
    short: str  # how running prose calls it
    settings: dict  # the TrainConfig fields that make this method
    # Relative seconds per training step (results/step_costs_cpu.csv, C = 8 on 2 CPU cores), to
    # start the dearest runs first when several share the machine.
    step_cost: float
    build: Callable[["TrainConfig", "CNNSpec"], nn.Module]  # the model of a config of this method
    # What the method can do; lists of methods elsewhere are queries of these (methods_that).
    uses_unlabelled: bool = False  # unlabelled support samples change its predictions (notebook 04)
    generates_layers: bool = False  # a HyperTransformer: writes CNN weights per episode
    second_order: bool = False  # differentiates through its own inner updates
    any_ways: bool = False  # classifies any number of classes, not only up to the N it trained on
    # in the paper's comparison of methods (notebook 03's sweep); MAML there is a profile's variant
    compared: bool = False


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("ht-all", "HT, all layers generated", "HT, all layers", {"method": "ht", "generate": "all"}, 3.0, _hypertransformer,
           uses_unlabelled=True, generates_layers=True, compared=True),
    Method("ht-logits", "HT, logits layer only generated", "HT, logits only",
           {"method": "ht", "generate": "logits"}, 1.3, _hypertransformer, uses_unlabelled=True, generates_layers=True, compared=True),
    Method("protonet", "ProtoNet", "ProtoNet", {"method": "protonet"}, 1.0, _protonet, any_ways=True, compared=True),
    Method("protonet-softkmeans", "ProtoNet + soft k-means", "ProtoNet + soft k-means",
           {"method": "protonet", "model_options": {"soft_kmeans_steps": 1}}, 1.0, _protonet, uses_unlabelled=True,
           any_ways=True),
    # second order, 5 inner steps at lr 0.1: the reference MAML of the paper's comparison
    Method("maml", "MAML (second order, 5 inner steps, lr 0.1)", "MAML", {"method": "maml"}, 10.0, _maml,
           second_order=True, compared=True),
    Method("fomaml", "first-order MAML (5 inner steps)", "first-order MAML",
           {"method": "maml", "model_options": {"first_order": True}}, 3.0, _maml),
    Method("fomaml-1step", "first-order MAML (1 inner step)", "first-order MAML, 1 step",
           {"method": "maml", "model_options": {"first_order": True, "inner_steps": 1}}, 1.5, _maml),
]}


def register(method: Method) -> Method:
    """Add a method to the table (docs/extending.md): its name must be new, its settings must name
    its family (TrainConfig.method), and a family has one builder."""
    if method.name in METHODS:
        raise ConfigError(f"A method called {method.name!r} exists already; choose another name.")
    family = method.settings.get("method")
    if not isinstance(family, str):
        raise ConfigError(f"Method {method.name!r}: settings must name its family, e.g. {{'method': 'mine'}}.")
    if family in families() and _builder(family) is not method.build:
        raise ConfigError(f"Method {method.name!r}: family {family!r} is built by {_builder(family).__name__}; "
                          f"a new family needs a name of its own.")
    METHODS[method.name] = method
    return method


def families() -> list[str]:
    """The model families behind the names (the values TrainConfig.method takes), in table order."""
    return list(dict.fromkeys(m.settings["method"] for m in METHODS.values()))


def _builder(family: str) -> Callable:
    return next(m.build for m in METHODS.values() if m.settings["method"] == family)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"Unknown method {name!r}; choose from {list(METHODS)}") from None


def methods_that(**capabilities: bool) -> list[str]:
    """The names of the methods with these capabilities, in table order, e.g.
    methods_that(uses_unlabelled=True) -> ["ht-all", "ht-logits", "protonet-softkmeans"]."""
    unknown = sorted(set(capabilities) - {f.name for f in fields(Method) if f.type in (bool, "bool")})
    if unknown:
        raise ConfigError(f"Unknown method capabilities {unknown}")
    return [name for name, m in METHODS.items() if all(getattr(m, k) == v for k, v in capabilities.items())]


def compared_methods(maml: str = "maml") -> list[str]:
    """The methods of the paper's comparison, with `maml` standing for MAML (a profile's variant:
    first order on the CPU profiles, Profile.sweep_maml)."""
    get_method(maml)
    return [maml if METHODS[name].second_order else name for name in methods_that(compared=True)]


def method_settings(name: str) -> dict:
    """The TrainConfig fields of a named method (a copy: callers may change it)."""
    return copy.deepcopy(get_method(name).settings)


def method_name(cfg: "TrainConfig") -> str:
    """The name a config's method carries in result tables: ht-all, ht-logits, ht-2, protonet, maml, ...

    MAML is "maml" with its defaults (second order, 5 inner steps); first order is "fomaml", and
    another number of inner steps adds "-<n>step" (e.g. "fomaml-1step").
    """
    if cfg.method == "ht":
        return f"ht-{cfg.generate}"
    if cfg.method == "maml":
        name = "fomaml" if cfg.model_options.get("first_order", False) else "maml"
        steps = cfg.model_options.get("inner_steps", 5)
        return name if steps == 5 else f"{name}-{steps}step"
    if cfg.method == "protonet" and cfg.model_options.get("soft_kmeans_steps", 0):
        return "protonet-softkmeans"
    return cfg.method


def method_label(name: str, short: bool = False) -> str:
    """The reader-facing label of a method name ("ht-2" and other unnamed variants keep their name)."""
    if name not in METHODS:
        return name
    return METHODS[name].short if short else METHODS[name].label


def build_model(cfg: "TrainConfig", image_shape: tuple[int, int, int]) -> nn.Module:
    """The model of `cfg.method` for images of shape (C, H, W); `model_options` go to its constructor."""
    from htlib.models import CNNSpec

    if cfg.method not in families():
        raise ConfigError(f"Unknown method family {cfg.method!r}; choose one of {families()}.")
    channels, size, _ = image_shape
    spec = CNNSpec(image_channels=channels, image_size=size, channels=cfg.channels)
    try:
        return _builder(cfg.method)(cfg, spec)
    except TypeError as exc:  # an option the model does not have
        raise ConfigError(f"model_options {cfg.model_options} do not fit method {cfg.method!r}: {exc}") from None
