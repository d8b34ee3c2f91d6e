"""Datasets: counts, splits, caching and the errors a user can run into."""

from __future__ import annotations

import shutil
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from htlib.data import DataError, load_miniimagenet, load_omniglot, load_omniglot_arrays, load_split
from htlib.data.synthetic import load_synthetic

# ---------------------------------------------------------------- Omniglot (real data)


def test_omniglot_counts(omniglot_data_dir, tmp_path):
    images, names, char_ids = load_omniglot_arrays(omniglot_data_dir)
    assert images.shape == (1623, 20, 28, 28) and images.dtype == np.uint8
    assert len(set(names)) == 1623
    assert (char_ids == np.arange(1, 1624)).all()
    # background then evaluation: ids 1-964 come from images_background.zip
    with zipfile.ZipFile(omniglot_data_dir / "omniglot" / "images_background.zip") as zf:
        background_names = {"/".join(m.split("/")[1:3]) for m in zf.namelist() if m.endswith(".png")}
    assert set(names[:964]) == background_names
    # ink is bright and antialiased: a background of zeros, intermediate grey levels exist
    assert np.median(images) == 0 and images.max() == 255
    assert ((images > 0) & (images < 255)).any()


def test_omniglot_cache_reloads_fast(omniglot_data_dir):
    load_omniglot_arrays(omniglot_data_dir)  # make sure the cache exists
    start = time.perf_counter()
    load_omniglot_arrays(omniglot_data_dir)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "scheme,sizes",
    [("vinyals", (4112, 688, 1692)), ("lake", (813, 151, 659)), ("reference", (1150, 50, 423))],
)
def test_omniglot_splits_sizes_and_disjoint(omniglot_data_dir, scheme, sizes):
    splits = {s: load_omniglot(s, scheme, omniglot_data_dir) for s in ("train", "val", "test")}
    assert tuple(splits[s].num_classes for s in ("train", "val", "test")) == sizes
    # disjoint at the level of CHARACTERS (a rotation of a train character is not a test class)
    chars = {s: d.source_classes() for s, d in splits.items()}
    assert not chars["train"] & chars["val"]
    assert not chars["train"] & chars["test"]
    assert not chars["val"] & chars["test"]
    if scheme == "vinyals":  # four rotations of each character
        assert sizes[0] == 1028 * 4
        assert sorted(splits["train"].rotation.bincount().tolist()) == [1028] * 4
    else:
        assert len(chars["train"] | chars["val"] | chars["test"]) == 1623


def test_omniglot_rotated_class_images(omniglot_data_dir):
    train = load_omniglot("train", "vinyals", omniglot_data_dir)
    i = int((train.rotation == 1).nonzero()[0])
    plain = train.images[train.source[i]]
    assert torch.equal(train.class_images(i), torch.rot90(plain, 1, dims=(-2, -1)))
    assert train.names[i].endswith("rot090")


def test_unknown_split_names(omniglot_data_dir):
    with pytest.raises(ValueError, match="split scheme"):
        load_omniglot("train", "bogus", omniglot_data_dir)
    with pytest.raises(ValueError, match="Unknown split"):
        load_omniglot("training", "vinyals", omniglot_data_dir)
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_split("cifar", "train")


# ---------------------------------------------------------------- Omniglot errors


def test_missing_archive_says_where_and_how(tmp_path):
    with pytest.raises(DataError, match="images_background.zip") as info:
        load_omniglot_arrays(tmp_path, cache_dir=tmp_path / "cache")
    assert str(tmp_path) in str(info.value) and "download" in str(info.value)


def test_truncated_archive(omniglot_data_dir, tmp_path):
    root = tmp_path / "omniglot"
    root.mkdir()
    source = omniglot_data_dir / "omniglot"
    (root / "images_background.zip").write_bytes((source / "images_background.zip").read_bytes()[:100_000])
    shutil.copy(source / "images_evaluation.zip", root)
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_omniglot_arrays(tmp_path, cache_dir=tmp_path / "cache")


def _fake_archive(path, part, characters, drawings):
    with zipfile.ZipFile(path, "w") as zf:
        for c in range(characters):
            for d in range(1, drawings + 1):
                img = Image.new("1", (105, 105), 1)
                buf = __import__("io").BytesIO()
                img.save(buf, format="PNG")
                zf.writestr(f"images_{part}/Alpha/character{c + 1:02d}/{c + 1:04d}_{d:02d}.png", buf.getvalue())


def test_wrong_counts_are_reported(tmp_path):
    root = tmp_path / "omniglot"
    root.mkdir()
    _fake_archive(root / "images_background.zip", "background", characters=3, drawings=20)
    _fake_archive(root / "images_evaluation.zip", "evaluation", characters=2, drawings=20)
    with pytest.raises(DataError, match="holds 3 characters, expected 964"):
        load_omniglot_arrays(tmp_path, cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_disjoint():
    a, b = load_synthetic("train", seed=3), load_synthetic("train", seed=3)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, load_synthetic("train", seed=4).images)
    splits = {s: load_synthetic(s) for s in ("train", "val", "test")}
    assert [splits[s].num_classes for s in ("train", "val", "test")] == [240, 40, 80]
    # no image of one split appears in another
    assert not splits["train"].source_classes() & splits["test"].source_classes()
    flat = {s: {bytes(img.numpy()) for img in d.images.flatten(0, 1)} for s, d in splits.items()}
    assert not flat["train"] & flat["test"] and not flat["train"] & flat["val"]
    # within a class images differ (jitter) yet look alike more than across classes
    imgs = splits["train"].images.float()
    within = (imgs[:, 0] - imgs[:, 1]).abs().mean()
    across = (imgs[:-1, 0] - imgs[1:, 0]).abs().mean()
    assert 0 < within < across


# ---------------------------------------------------------------- miniImageNet format


def _write_mini(root, classes=3, per_class=4, size=(100, 120)):
    (root / "images").mkdir(parents=True)
    (root / "splits" / "ravi").mkdir(parents=True)
    rows = ["filename,label"]
    rng = np.random.default_rng(0)
    for c in range(classes):
        label = f"n0{c}000000"
        for j in range(per_class):
            name = f"{label}{j:08d}.jpg"
            colour = np.zeros((*size, 3), np.uint8)
            colour[..., c % 3] = 200  # each class has its own dominant colour
            colour += rng.integers(0, 40, colour.shape, dtype=np.uint8)
            Image.fromarray(colour).save(root / "images" / name)
            rows.append(f"{name},{label}")
    (root / "splits" / "ravi" / "train.csv").write_text("\n".join(rows) + "\n")


def test_miniimagenet_layout(tmp_path):
    _write_mini(tmp_path / "miniimagenet")
    data = load_miniimagenet("train", tmp_path, cache_dir=tmp_path / "cache", expected_per_class=None)
    assert data.images.shape == (3, 4, 3, 84, 84)
    assert data.names == ["n00000000", "n01000000", "n02000000"]
    # the dominant channel of class c is c: images are RGB, channel-first, in order
    means = data.images.float().mean(dim=(1, 3, 4))  # (classes, 3)
    assert means.argmax(dim=1).tolist() == [0, 1, 2]
    again = load_miniimagenet("train", tmp_path, cache_dir=tmp_path / "cache", expected_per_class=None)
    assert torch.equal(again.images, data.images)


def test_miniimagenet_errors(tmp_path):
    with pytest.raises(DataError, match="split file not found"):
        load_miniimagenet("train", tmp_path, cache_dir=tmp_path / "cache")
    _write_mini(tmp_path / "miniimagenet")
    with pytest.raises(DataError, match="expected 600"):
        load_miniimagenet("train", tmp_path, cache_dir=tmp_path / "cache")
    next((tmp_path / "miniimagenet" / "images").iterdir()).unlink()
    with pytest.raises(DataError, match="same number|missing"):
        load_miniimagenet("train", tmp_path, cache_dir=tmp_path / "cache", expected_per_class=None)
