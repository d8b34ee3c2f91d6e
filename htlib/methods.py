"""The methods this project compares, in one table: name -> model, options, step cost, label, capabilities.

A method's name is what a run is: `TrainConfig.method` holds it ("ht-all", "protonet-softkmeans",
"fomaml-1step", or "ht-<n>" for an HT that writes the last n conv layers), and `model_options` only
refine it. Every consumer reads this table: training (`build_model`), the experiments (which
methods they compare: `methods_that(uses_unlabelled=True)`, `compared_methods()`), the result
tables and run folders (the name itself), the benchmarks and the notebooks (labels).
tests/test_methods.py checks each capability against the model itself; docs/extending.md adds a
method.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from torch import nn

from htlib.errors import ConfigError

if TYPE_CHECKING:
    from htlib.models import CNNSpec


# The model builders: (the target CNN's shape, N the model trains for, options) -> the model.
# `options` are the method's own, refined by the config's model_options.
def _hypertransformer(spec: "CNNSpec", ways: int, options: dict) -> nn.Module:
    from htlib.models import HTConfig, HyperTransformer

    return HyperTransformer(HTConfig(cnn=spec, max_ways=ways, **options))


def _protonet(spec: "CNNSpec", ways: int, options: dict) -> nn.Module:
    from htlib.models import ProtoNet

    return ProtoNet(spec, **options)


def _maml(spec: "CNNSpec", ways: int, options: dict) -> nn.Module:
    from htlib.models import MAML

    return MAML(spec, max_ways=ways, **options)


@dataclass(frozen=True)
class Method:
    name: str  # the name in configs, result tables and on the command line
    label: str  # how figures and tables call it
    short: str  # how running prose calls it
    build: Callable[["CNNSpec", int, dict], nn.Module]  # (CNN shape, ways, options) -> the model
    # the model options that make this method; a config's model_options refine the others
    options: dict = field(default_factory=dict)
    # Relative seconds per training step (results/step_costs_cpu.csv, C = 8 on 2 CPU cores), to
    # start the dearest runs first when several share the machine.
    step_cost: float = 1.0
    # What the method can do; lists of methods elsewhere are queries of these (methods_that).
    uses_unlabelled: bool = False  # unlabelled support samples change its predictions (notebook 04)
    generates_layers: bool = False  # a HyperTransformer: writes CNN weights per episode
    second_order: bool = False  # differentiates through its own inner updates
    any_ways: bool = False  # classifies any number of classes, not only up to the N it trained on
    # in the paper's comparison of methods (notebook 03's sweep); MAML there is a profile's variant
    compared: bool = False
    # a method that only changes how another one's trained model is used (soft k-means refines
    # ProtoNet's prototypes) starts from that method's supervised run (notebook 04)
    starts_from: str | None = None


_HT = dict(build=_hypertransformer, uses_unlabelled=True, generates_layers=True)
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("ht-all", "HT, all layers generated", "HT, all layers", options={"generate": "all"}, step_cost=3.0,
           compared=True, **_HT),
    Method("ht-logits", "HT, logits layer only generated", "HT, logits only", options={"generate": "logits"},
           step_cost=1.3, compared=True, **_HT),
    Method("protonet", "ProtoNet", "ProtoNet", _protonet, any_ways=True, compared=True),
    Method("protonet-softkmeans", "ProtoNet + soft k-means", "ProtoNet + soft k-means", _protonet,
           options={"soft_kmeans_steps": 1}, uses_unlabelled=True, any_ways=True, starts_from="protonet"),
    # second order, 5 inner steps at lr 0.1: the reference MAML of the paper's comparison
    Method("maml", "MAML (second order, 5 inner steps, lr 0.1)", "MAML", _maml, step_cost=10.0, second_order=True,
           compared=True),
    Method("fomaml", "first-order MAML (5 inner steps)", "first-order MAML", _maml,
           options={"first_order": True}, step_cost=3.0),
    Method("fomaml-1step", "first-order MAML (1 inner step)", "first-order MAML, 1 step", _maml,
           options={"first_order": True, "inner_steps": 1}, step_cost=1.5),
]}
# "ht-<n>": the HT that writes the last n conv layers and the logits layer (notebook 03's "last
# layers" axis); a family of names, so it is derived from ht-all rather than listed.
_HT_LAST = re.compile(r"ht-(\d+)")


def register(method: Method) -> Method:
    """Add a method to the table (docs/extending.md): its name must be new."""
    if not isinstance(method, Method):
        raise ConfigError(f"register() takes a htlib.methods.Method, got {type(method).__name__}.")
    if method.name in METHODS or _HT_LAST.fullmatch(method.name):
        raise ConfigError(f"A method called {method.name!r} exists already; choose another name.")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The entry of a method name; "ht-<n>" is ht-all writing only the last n conv layers."""
    if isinstance(name, str) and name in METHODS:
        return METHODS[name]
    last = _HT_LAST.fullmatch(name) if isinstance(name, str) else None
    if last:
        n = int(last[1])
        return dataclasses.replace(METHODS["ht-all"], name=name, label=f"HT, last {n} conv layers + logits generated",
                                   short=f"HT, last {n}", options={"generate": n}, compared=False)
    raise ConfigError(f"Unknown method {name!r}; choose one of {list(METHODS)} or ht-<n> (the HT writing the "
                      f"last n conv layers).")


def ht_method(generate: str | int) -> str:
    """The name of the HT that writes `generate` ("all", "logits" or the last n conv layers)."""
    return get_method(f"ht-{generate}").name


def methods_that(**capabilities: bool) -> list[str]:
    """The names of the methods with these capabilities, in table order, e.g.
    methods_that(uses_unlabelled=True) -> ["ht-all", "ht-logits", "protonet-softkmeans"]."""
    unknown = sorted(set(capabilities) - {f.name for f in fields(Method) if f.type in (bool, "bool")})
    if unknown:
        raise ConfigError(f"Unknown method capabilities {unknown}")
    return [name for name, m in METHODS.items() if all(getattr(m, k) == v for k, v in capabilities.items())]


def compared_methods(maml: str = "maml") -> list[str]:
    """The methods of the paper's comparison, with `maml` standing for MAML (a profile's variant:
    first order on the CPU profiles: htlib.experiments.sweep.SWEEP_MAML)."""
    get_method(maml)
    return [maml if METHODS[name].second_order else name for name in methods_that(compared=True)]


def method_label(name: str, short: bool = False) -> str:
    """The reader-facing label of a method name (a name this process has not registered, say from
    a results file of a notebook's own method, keeps its name)."""
    try:
        method = get_method(name)
    except ConfigError:
        return name
    return method.short if short else method.label


def model_options(name: str, refinements: dict) -> dict:
    """The options a method's model is built with: its own, refined by a config's model_options.
    A refinement may not change what makes the method (that is another method, with its own name)."""
    own = get_method(name).options
    clash = sorted(k for k in own if k in refinements and refinements[k] != own[k])
    if clash:
        raise ConfigError(f"model_options {clash} would change what method {name!r} is ({own}); choose the method "
                          f"that has them by its name (htlib.methods.METHODS, or ht-<n> for generate=n).")
    return {**copy.deepcopy(own), **refinements}


def build_model(cfg, image_shape: tuple[int, int, int]) -> nn.Module:
    """The model of a (resolved) config's method for images of shape (C, H, W)."""
    from htlib.models import CNNSpec

    method = get_method(cfg.method)
    channels, size, _ = image_shape
    spec = CNNSpec(image_channels=channels, image_size=size, channels=cfg.channels)
    options = model_options(method.name, cfg.model_options)
    try:
        return method.build(spec, cfg.ways, options)
    except TypeError as exc:  # an option the model does not have
        raise ConfigError(f"model_options {cfg.model_options} do not fit method {cfg.method!r}: {exc}") from None


# Configs written before methods had names (config.json and checkpoints of earlier runs) held the
# model family in `method` ("ht", "protonet", "maml") and the HT's layers in `generate`. They are
# read in today's form: the method whose own options the stored ones contain (the most of them).
_FAMILIES = {"ht": _hypertransformer, "protonet": _protonet, "maml": _maml}


def upgrade_stored_config(stored: dict) -> dict:
    """A stored config's fields in today's form (a copy); today's are returned unchanged."""
    if not isinstance(stored, dict) or ("generate" not in stored and stored.get("method") not in _FAMILIES):
        return stored
    out = copy.deepcopy(stored)
    family = out.pop("method", "ht")
    generate = out.pop("generate", "all")
    options = out.get("model_options", {})
    if family not in _FAMILIES or not isinstance(options, dict):
        return stored  # not an old config either: the checks that follow name what is wrong
    if family == "ht":
        out["method"] = ht_method(generate)
        return out
    fitting = [m for m in METHODS.values() if m.build is _FAMILIES[family]
               and all(k in options and options[k] == v for k, v in m.options.items())]
    method = max(fitting, key=lambda m: len(m.options))
    out["method"] = method.name
    out["model_options"] = {k: v for k, v in options.items() if k not in method.options}
    return out
