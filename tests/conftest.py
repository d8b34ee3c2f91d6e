"""Shared fixtures: where the real Omniglot lives for tests (never downloaded here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def omniglot_data_dir() -> Path:
    """The data directory holding omniglot/*.zip.

    HTLIB_DATA wins; when it is set but lacks the archives the test FAILS (CI sets it, so
    a broken data path must not turn into silent skips). Without HTLIB_DATA we look at
    ../shared/data and skip, saying why, only if that is absent too.
    """
    env = os.environ.get("HTLIB_DATA")
    if env:
        path = Path(env)
        assert (path / "omniglot" / "images_background.zip").is_file(), (
            f"HTLIB_DATA={env} has no omniglot/images_background.zip")
        return path
    if (SHARED_DATA / "omniglot" / "images_background.zip").is_file():
        return SHARED_DATA
    pytest.skip("real Omniglot not found: set HTLIB_DATA to a directory holding omniglot/*.zip")


@pytest.fixture(scope="module")
def single_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP
    spin-waiting makes them up to 10x slower. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
