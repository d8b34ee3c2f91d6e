"""docs/extending.md: its worked example (a new method, registered, trained, swept) runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from htlib import methods
from htlib.errors import ConfigError

DOC = Path(__file__).parents[1] / "docs" / "extending.md"


@pytest.fixture
def registry():
    """The example's registration must not outlive the test (the table is restored in place: other
    modules hold the same dict)."""
    before = dict(methods.METHODS)
    yield methods
    methods.METHODS.clear()
    methods.METHODS.update(before)


def test_the_worked_example_adds_a_method_that_trains_and_sweeps(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("htlib.runs.RESULTS_ROOT", tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) == 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert re.search(r"^matching \d+\.\d%$", out, flags=re.MULTILINE), out
    table = namespace["table"]
    assert sorted(table["method"]) == ["matching", "protonet"] and table["test_accuracy"].between(0, 1).all()
    assert registry.methods_that(any_ways=True)[-1] == "matching"
    assert registry.method_label("matching", short=True) == "matching net"
    # the capability the entry claims holds for its model: it takes more classes than it trained on
    import torch

    from htlib.config import TrainConfig
    from htlib.data import EpisodeSampler, load_split

    split = load_split("synthetic", "train")
    model = registry.build_model(TrainConfig(method="matching", dataset="synthetic", ways=5), split.image_shape)
    wider = EpisodeSampler(split, 7, 1, 2, batch_size=1, seed=0).sample()
    assert model(wider.support, wider.support_labels, wider.query, 7).shape == (1, 14, 7)
    assert torch.isfinite(model(wider.support, wider.support_labels, wider.query, 7)).all()


def test_register_refuses_a_taken_name_and_what_is_not_an_entry(registry):
    entry = registry.METHODS["protonet"]
    with pytest.raises(ConfigError, match="'protonet' exists already"):
        registry.register(entry)
    with pytest.raises(ConfigError, match="'ht-3' exists already"):  # one of the ht-<n> names
        registry.register(registry.Method("ht-3", "Mine", "mine", entry.build))
    with pytest.raises(ConfigError, match="takes a htlib.methods.Method, got dict"):
        registry.register({"name": "mine"})
    registry.register(registry.Method("protonet-2", "ProtoNet again", "ProtoNet", entry.build))  # a builder reused
    assert registry.get_method("protonet-2").build is entry.build
