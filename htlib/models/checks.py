"""Input checks shared by every few-shot model: a clear ValueError that says what is wrong.

Shape checks read only metadata. Checks of label *values* read tensor contents, which on a GPU
makes the host wait for the device (a sync) in every call; the trainer feeds episodes that its own
sampler built valid, so it switches those off for its hot loop with `trusted_episodes()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from htlib.models.cnn import CNNSpec

_value_checks = True


@contextmanager
def trusted_episodes() -> Iterator[None]:
    """Within this block the models skip the checks that read label values (shapes are still
    checked). For episodes made by htlib's samplers only: their labels are valid by construction."""
    global _value_checks
    previous, _value_checks = _value_checks, False
    try:
        yield
    finally:
        _value_checks = previous


def value_checks_on() -> bool:
    return _value_checks


def check_support(spec: CNNSpec, images: Tensor, labels: Tensor, num_classes: int,
                  max_ways: int | None = None) -> None:
    """Support images (B, S, C, H, W) matching `spec`, integer labels (B, S) in [0, N) or -1,
    and 1 <= num_classes <= max_ways."""
    expect = (spec.image_channels, spec.image_size, spec.image_size)
    if images.dim() != 5 or tuple(images.shape[2:]) != expect:
        raise ValueError(
            f"support_images must be (B, S, {expect[0]}, {expect[1]}, {expect[2]}), got {tuple(images.shape)}.")
    if labels.dim() != 2 or tuple(labels.shape) != tuple(images.shape[:2]):
        raise ValueError(
            f"support_labels must be (B, S) = {tuple(images.shape[:2])} to match the images, "
            f"got {tuple(labels.shape)}.")
    if labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"support_labels must be an integer (long) tensor, got {labels.dtype}.")
    if num_classes < 1 or (max_ways is not None and num_classes > max_ways):
        upper = "" if max_ways is None else f", max_ways={max_ways}"
        raise ValueError(f"num_classes must be in [1{upper}], got {num_classes}; a model built for "
                         f"max_ways classes cannot take more.")
    if _value_checks and labels.numel() and (labels.min() < -1 or labels.max() >= num_classes):
        raise ValueError(
            f"support_labels must lie in [0, {num_classes - 1}] or be -1 (unlabelled), got values in "
            f"[{int(labels.min())}, {int(labels.max())}].")


def check_query(support_images: Tensor, query_images: Tensor) -> None:
    """Query images (B, Q, C, H, W) with the episodes and image shape of the support images."""
    if query_images.dim() != 5 or query_images.shape[0] != support_images.shape[0] or (
            query_images.shape[2:] != support_images.shape[2:]):
        raise ValueError(
            f"query_images must be (B, Q, C, H, W) with B and C, H, W as the support images "
            f"{tuple(support_images.shape)}, got {tuple(query_images.shape)}.")
