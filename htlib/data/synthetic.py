"""A small synthetic glyph dataset: Omniglot-like, generated on the fly, no files needed.

Each class is a random "character" made of 2-4 pen strokes; each of its images redraws
the strokes with a little jitter (point positions, shift, scale, pen width), the way
Omniglot's 20 drawers each drew a character slightly differently. Deterministic from
the seed. It exists so that unit tests and the `ci` profile never depend on big files,
and so that the notebooks run offline. Results on it are labelled "synthetic" and are
never comparable to Omniglot's.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw

from htlib.data.base import ClassImages
from htlib.errors import ConfigError

DEFAULT_CLASSES = {"train": 240, "val": 40, "test": 80}
_CANVAS = 64  # draw large, then downsample with area averaging (antialiased)


def _draw_glyph(strokes: list[np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    shift = rng.normal(0.0, 0.04, size=2)
    scale = rng.uniform(0.9, 1.1)
    width = int(rng.integers(3, 6))
    img = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw = ImageDraw.Draw(img)
    for stroke in strokes:
        pts = (stroke - 0.5) * scale + 0.5 + shift + rng.normal(0.0, 0.025, size=stroke.shape)
        draw.line([tuple(p) for p in (pts * _CANVAS)], fill=255, width=width, joint="curve")
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


@lru_cache(maxsize=8)
def _generate(num_classes: int, per_class: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((num_classes, per_class, size, size), dtype=np.uint8)
    for c in range(num_classes):
        strokes = [rng.uniform(0.15, 0.85, size=(int(rng.integers(2, 5)), 2))
                   for _ in range(int(rng.integers(2, 5)))]
        for j in range(per_class):
            out[c, j] = _draw_glyph(strokes, rng, size)
    return out


def load_synthetic(
    split: str = "train",
    image_size: int = 28,
    per_class: int = 20,
    seed: int = 0,
    classes: dict[str, int] | None = None,
) -> ClassImages:
    """One split of the synthetic glyph dataset; splits never share a class.

    `classes` maps split name to its number of classes (default 240/40/80).
    """
    counts = dict(DEFAULT_CLASSES if classes is None else classes)
    if split not in counts:
        raise ConfigError(f"Unknown split {split!r}; choose one of {sorted(counts)}")
    # Each split draws its glyphs from its own derived seed, so no two splits share a class.
    split_seed = seed * 1000 + sorted(counts).index(split)
    images = _generate(counts[split], per_class, image_size, split_seed)
    tensor = torch.from_numpy(images).unsqueeze(2)  # (classes, per_class, 1, H, W)
    n = counts[split]
    return ClassImages(
        tensor, torch.arange(n), torch.zeros(n, dtype=torch.long),
        [f"synthetic-{split}/glyph{i:04d}" for i in range(n)], split, "synthetic",
        info={"seed": seed, "image_size": image_size},
    )
