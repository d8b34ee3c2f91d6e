"""The container every dataset loader returns: images grouped by class.

A few-shot dataset is a set of classes, each with a number of images. We keep all
images of a split as one uint8 tensor `(num_source_classes, per_class, C, H, W)` and
describe each *episode class* as (source class, rotation): the Vinyals Omniglot split
turns each character into four classes by rotating it by 0/90/180/270 degrees, and
storing a rotation index instead of four rotated copies keeps memory at one copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from htlib.errors import UserError


class DataError(UserError, RuntimeError):
    """A problem with the data on disk that the user must fix (the message says how)."""


@dataclass
class ClassImages:
    """All classes of one split.

    Attributes:
        images: uint8 tensor (num_source_classes, per_class, C, H, W); ink/foreground high.
        source: long tensor (num_classes,): which row of `images` each class uses.
        rotation: long tensor (num_classes,): quarter turns (0-3) applied to that class.
        names: one human-readable name per class, e.g. "Greek/character03/rot090".
        split: name of the split ("train", "val", "test").
        dataset: name of the dataset ("omniglot", "synthetic", "miniimagenet").
        source_names: one name per row of `images` (e.g. "Greek/character03"), the identity
            used to check that splits never share a source class; defaults to `names`.
    """

    images: torch.Tensor
    source: torch.Tensor
    rotation: torch.Tensor
    names: list[str]
    split: str
    dataset: str
    info: dict = field(default_factory=dict)
    source_names: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 5:
            raise ValueError(
                f"images must be uint8 (classes, per_class, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        n = len(self.names)
        if self.source.shape != (n,) or self.rotation.shape != (n,):
            raise ValueError(
                f"source/rotation must have one entry per class name ({n}), got "
                f"{tuple(self.source.shape)} and {tuple(self.rotation.shape)}"
            )

    def source_classes(self) -> set[str]:
        """Names of the source classes (characters, for Omniglot) this split uses.

        Splits of one dataset are disjoint when these sets do not intersect; comparing names,
        not row indices, also works for datasets whose splits have separate image arrays.
        """
        names = self.source_names if self.source_names is not None else self.names
        return {names[i] for i in self.source.tolist()}

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def per_class(self) -> int:
        return self.images.shape[1]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[2:])  # (C, H, W)

    def class_images(self, index: int) -> torch.Tensor:
        """All images of class `index` as uint8 (per_class, C, H, W), rotation applied."""
        imgs = self.images[self.source[index]]
        return torch.rot90(imgs, int(self.rotation[index]), dims=(-2, -1))

    def __repr__(self) -> str:
        return (
            f"ClassImages({self.dataset}/{self.split}: {self.num_classes} classes x "
            f"{self.per_class} images of {self.image_shape})"
        )


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], the pixel range the paper uses."""
    return images.float().mul_(2.0 / 255.0).sub_(1.0)
