"""Helpers shared by the tests (imported as `helpers`; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

# The device the notebook tests run on: `make test DEVICE=cuda` sets it (the Makefile's TEST_ENV).
TEST_DEVICE = os.environ.get("HTLIB_TEST_DEVICE", "auto")

# (how to break an episode, what the error message must say): every model must reject these.
BAD_INPUTS = [
    (dict(num_classes=0), "num_classes"),
    (dict(labels_value=3), r"\[0, 2\]"),
    (dict(labels_value=-2), "unlabelled"),
    (dict(labels_shape=(2, 5)), r"support_labels must be \(B, S\)"),
    (dict(image_size=32), "support_images must be"),
    (dict(image_channels=3), "support_images must be"),
    (dict(query_size=32), "query_images"),
    (dict(query_episodes=3), "query_images"),
    (dict(float_labels=True), "integer"),
]


def broken_episode(change: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """A 3-way episode batch (B=2, 6 support, 4 queries, 28x28x1) with one thing `change`d."""
    n = change.get("num_classes", 3)
    xs = torch.randn(2, 6, change.get("image_channels", 1), change.get("image_size", 28), 28).double()
    ys = torch.arange(3).repeat(2, 2)
    if "labels_value" in change:
        ys[0, 0] = change["labels_value"]
    if change.get("missing_class"):
        ys[1] = torch.tensor([0, 1, 0, 1, -1, -1])
    if "labels_shape" in change:
        ys = torch.zeros(change["labels_shape"], dtype=torch.long)
    if change.get("float_labels"):
        ys = ys.double()
    xq = torch.randn(change.get("query_episodes", 2), 4, 1, change.get("query_size", 28), 28).double()
    return xs, ys, xq, n


def adam_fit(model, xs, ys, xq, yq, num_classes: int, steps: int, lr: float = 1e-2) -> list[float]:
    """Train `model` on one episode (query labels yq) with Adam; returns the loss of every step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(xs, ys, xq, num_classes)[0], yq)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def episode(b: int, n: int, k: int, q: int = 0, c: int = 1, size: int = 28, dtype=torch.float64):
    """Random images for B episodes of n-way k-shot: support (B, n*k, c, size, size), labels, queries."""
    xs = torch.randn(b, n * k, c, size, size, dtype=dtype)
    ys = torch.arange(n).repeat_interleave(k).repeat(b, 1)
    xq = torch.randn(b, q, c, size, size, dtype=dtype)
    return xs, ys, xq


def png_data_offset(archive: Path) -> int:
    """Offset of a byte in the middle of the compressed data of the archive's first PNG."""
    with zipfile.ZipFile(archive) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(".png"))
    with open(archive, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
