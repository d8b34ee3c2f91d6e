"""Datasets (Omniglot, miniImageNet, synthetic glyphs) and episode sampling."""

from __future__ import annotations

import os

from htlib.data.base import ClassImages, DataError, to_float
from htlib.data.episodes import Episode, EpisodeSampler
from htlib.data.miniimagenet import load_miniimagenet
from htlib.data.omniglot import download_omniglot, load_omniglot, load_omniglot_arrays
from htlib.data.paths import cache_dir, data_dir
from htlib.data.synthetic import load_synthetic

DATASETS = ("omniglot", "synthetic", "miniimagenet")


def load_split(
    dataset: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    split_scheme: str = "vinyals",
    image_size: int | None = None,
) -> ClassImages:
    """Load one split of a dataset by name: the single entry point notebooks and training use."""
    if dataset == "omniglot":
        return load_omniglot(split, split_scheme, data_dir, image_size or 28)
    if dataset == "synthetic":
        return load_synthetic(split, image_size or 28)
    if dataset == "miniimagenet":
        return load_miniimagenet(split, data_dir, image_size or 84)
    raise ValueError(f"Unknown dataset {dataset!r}; choose one of {DATASETS}")


__all__ = [
    "ClassImages", "DataError", "Episode", "EpisodeSampler", "DATASETS", "cache_dir", "data_dir",
    "download_omniglot", "load_miniimagenet", "load_omniglot", "load_omniglot_arrays",
    "load_split", "load_synthetic", "to_float",
]
