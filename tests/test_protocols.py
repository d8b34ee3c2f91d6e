"""The protocols (htlib.data.protocols): the authors' Omniglot split and their independent queries."""

from __future__ import annotations

import random

import pytest
import torch

from htlib.cli import _config, build_parser
from htlib.config import TrainConfig
from htlib.data import EpisodeSampler, load_split
from htlib.data.base import ClassImages
from htlib.data.device_episodes import DeviceEpisodeSampler
from htlib.data.omniglot import paper_character_order
from htlib.data.protocols import PROTOCOLS, protocol_of, protocol_settings
from htlib.errors import ConfigError
from htlib.runs import make_run


def _alphabets(split) -> set[str]:
    return {name.split("/")[0] for name in split.names}


def test_the_paper_split_is_the_seeded_shuffle_cut_1150_50_423(omniglot_data_dir):
    splits = {s: load_split("omniglot", s, omniglot_data_dir, split_scheme="paper") for s in ("train", "val", "test")}
    assert [splits[s].num_classes for s in ("train", "val", "test")] == [1150, 50, 423]
    chars = {s: set(d.source_names[i] for i in d.source.tolist()) for s, d in splits.items()}
    assert not (chars["train"] & chars["val"]) and not (chars["train"] & chars["test"]) and not (chars["val"] & chars["test"])
    assert len(chars["train"] | chars["val"] | chars["test"]) == 1623
    assert all((d.rotation == 0).all() for d in splits.values())  # rotations only as training augmentation
    # positions 1200-1622 of Python's shuffle seeded 2022, on characters in official id order
    order = list(range(1623))
    random.Random(2022).shuffle(order)
    assert sorted(splits["test"].source.tolist()) == sorted(order[1200:])
    assert paper_character_order() == order
    # what makes it unlike the Vinyals protocol: test characters come from alphabets seen in training
    assert _alphabets(splits["test"]) <= _alphabets(splits["train"])
    vinyals = {s: load_split("omniglot", s, omniglot_data_dir) for s in ("train", "test")}
    assert _alphabets(vinyals["test"]) & _alphabets(vinyals["train"]) == {"Gurmukhi"}  # 1 of its 13 (4 characters)


def _unique_images(classes: int = 30, per_class: int = 20) -> ClassImages:
    """Every drawing a different image (its index written into the pixels), so equal images mean
    the same drawing."""
    ids = torch.arange(classes * per_class)
    images = torch.zeros(classes * per_class, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = (ids % 256).to(torch.uint8), (ids // 256).to(torch.uint8)
    return ClassImages(images.view(classes, per_class, 1, 4, 4), torch.arange(classes), torch.zeros(classes, dtype=torch.long),
                       [f"c{i}" for i in range(classes)], "train", "synthetic")


def _repeats(episode) -> tuple[int, int]:
    """(queries equal to a support image of their episode, queries)."""
    s = episode.support.flatten(2)  # (B, S, P)
    q = episode.query.flatten(2)  # (B, Q, P)
    same = (q[:, :, None] == s[:, None]).all(-1).any(-1)  # (B, Q)
    return int(same.sum()), same.numel()


@pytest.mark.parametrize("sampler_class", [EpisodeSampler, DeviceEpisodeSampler])
def test_independent_queries_repeat_a_support_image_one_time_in_twenty(sampler_class):
    data = _unique_images()
    plain = sampler_class(data, ways=20, shots=1, queries=3, batch_size=200, seed=0)
    assert _repeats(plain.sample())[0] == 0  # the default never shows a query in the support set
    independent = sampler_class(data, ways=20, shots=1, queries=3, batch_size=200, seed=0, independent_queries=True)
    repeats, total = _repeats(independent.sample())
    # 12,000 queries, each one of the support image's class with p = 1/20: 600 expected, sd 24;
    # the band is 5 sd (a fixed seed: the same count every run, on every machine)
    assert total == 12000 and 480 <= repeats <= 720
    episode = independent.sample()
    # the queries of a class stay distinct from each other, and in their class
    q = episode.query.flatten(2).view(200, 20, 3, -1)
    assert not (q[:, :, 0] == q[:, :, 1]).all(-1).any()
    assert episode.query_labels.tolist() == plain.sample().query_labels.tolist()


def test_protocol_settings_and_their_run_folders():
    assert set(PROTOCOLS) == {"vinyals", "paper"}
    cfg = TrainConfig(**protocol_settings("paper"))
    assert cfg.split_scheme == "paper" and cfg.independent_queries and protocol_of(cfg) == "paper"
    assert protocol_of(TrainConfig()) == "vinyals" and protocol_of(TrainConfig(split_scheme="lake")) is None
    assert make_run(cfg).folder.name.endswith("-seed0-split_scheme=paper-independent_queries=True")
    with pytest.raises(ConfigError, match="Unknown protocol 'papers'"):
        protocol_settings("papers")


def test_the_command_line_takes_a_protocol_and_refuses_a_contradicting_split():
    parse = lambda *extra: _config(build_parser().parse_args(["train", "--run-dir", "x", *extra]))  # noqa: E731
    assert (parse("--protocol", "paper").split_scheme, parse("--protocol", "paper").independent_queries) == ("paper", True)
    assert (parse().split_scheme, parse().independent_queries) == ("vinyals", False)
    assert parse("--split-scheme", "lake").split_scheme == "lake"
    with pytest.raises(ConfigError, match="--protocol paper uses the 'paper' split"):
        parse("--protocol", "paper", "--split-scheme", "vinyals")
