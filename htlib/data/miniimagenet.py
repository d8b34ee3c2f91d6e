"""miniImageNet in the standard layout (Vinyals et al. 2016; Ravi & Larochelle 2017 split).

Layout expected in the data directory::

    <data_dir>/miniimagenet/images/<filename>.jpg          e.g. n0153282900000005.jpg
    <data_dir>/miniimagenet/splits/ravi/{train,val,test}.csv   rows "filename,label"

64 / 16 / 20 classes, 600 images each. Images are resized to 84x84 RGB (antialiased),
decoded once per split and cached as a uint8 array.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from htlib.data.base import ClassImages, DataError
from htlib.data.paths import cache_dir as resolve_cache_dir
from htlib.data.paths import data_dir as resolve_data_dir
from htlib.errors import ConfigError

HOW_TO_GET = (
    "miniImageNet images are not distributed with htlib (they derive from ImageNet). Place them "
    "as DIR/miniimagenet/images/<filename>.jpg with the Ravi split CSVs in "
    "DIR/miniimagenet/splits/ravi/, and point htlib at DIR with data_dir=... or HTLIB_DATA=DIR."
)


def _read_split_csv(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        raise DataError(f"miniImageNet split file not found: {path}. {HOW_TO_GET}")
    by_label: dict[str, list[str]] = defaultdict(list)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected a header 'filename,label', got {reader.fieldnames}")
        for row in reader:
            by_label[row["label"]].append(row["filename"])
    if not by_label:
        raise DataError(f"{path} lists no images")
    return by_label


def load_miniimagenet(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    image_size: int = 84,
    cache_dir: str | os.PathLike | None = None,
    expected_per_class: int | None = 600,
) -> ClassImages:
    """One split of miniImageNet as ClassImages with images (classes, per_class, 3, S, S).

    `expected_per_class` (600 for the real dataset) is checked; pass None to accept any
    count as long as every class has the same number of images.
    """
    if split not in ("train", "val", "test"):
        raise ConfigError(f"Unknown split {split!r}; choose 'train', 'val' or 'test'")
    root = resolve_data_dir(data_dir) / "miniimagenet"
    csv_path = root / "splits" / "ravi" / f"{split}.csv"
    by_label = _read_split_csv(csv_path)
    labels = sorted(by_label)
    counts = {len(by_label[label]) for label in labels}
    if len(counts) != 1 or (expected_per_class is not None and counts != {expected_per_class}):
        raise DataError(
            f"{csv_path}: classes have {sorted(counts)} images each, expected "
            f"{expected_per_class or 'the same number'} for every class."
        )
    per_class = counts.pop()
    image_dir = root / "images"
    missing = [f for label in labels for f in by_label[label] if not (image_dir / f).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} images listed in {csv_path} are missing from {image_dir} "
            f"(first: {missing[0]}). {HOW_TO_GET}"
        )
    meta = json.dumps({"csv_bytes": csv_path.stat().st_size, "per_class": per_class, "labels": len(labels)})
    cache = resolve_cache_dir(cache_dir) / f"miniimagenet_{split}_{image_size}px.npz"
    images = None
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["meta"]) == meta:
                images = stored["images"]
    if images is None:
        images = np.empty((len(labels), per_class, image_size, image_size, 3), dtype=np.uint8)
        for i, label in enumerate(labels):
            for j, name in enumerate(by_label[label]):
                try:
                    with Image.open(image_dir / name) as img:
                        img = img.convert("RGB").resize((image_size, image_size), Image.Resampling.BOX)
                        images[i, j] = np.asarray(img, dtype=np.uint8)
                except OSError as exc:
                    raise DataError(f"Could not decode {image_dir / name} ({exc}); replace the file.") from exc
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, images=images, meta=np.asarray(meta))
        os.replace(tmp, cache)
    tensor = torch.from_numpy(images).permute(0, 1, 4, 2, 3).contiguous()  # (classes, per, 3, S, S)
    n = len(labels)
    return ClassImages(tensor, torch.arange(n), torch.zeros(n, dtype=torch.long), labels, split,
                       "miniimagenet", info={"image_size": image_size})
