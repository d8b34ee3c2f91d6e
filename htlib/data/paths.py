"""Where datasets and decoded caches live.

Data directory, first match wins: the `data_dir` argument, the `HTLIB_DATA`
environment variable, the project's own `data/` folder (next to `htlib/`), `./data`.
Caches of decoded arrays go to `HTLIB_CACHE`, else `<project>/data/cache`, because the
data directory may be read-only (CI reads a shared copy). `HTLIB_SOURCE` moves the address
datasets are downloaded from, and `HTLIB_OFFLINE=1` forbids downloading at all.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_ENV = "HTLIB_DATA"
CACHE_ENV = "HTLIB_CACHE"
SOURCE_ENV = "HTLIB_SOURCE"
OFFLINE_ENV = "HTLIB_OFFLINE"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Resolve the data directory (see module docstring). Does not check that it exists."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    project_data = PROJECT_ROOT / "data"
    if (PROJECT_ROOT / "htlib").is_dir() and project_data.is_dir():
        return project_data
    return Path("data")


def cache_dir(path: str | os.PathLike | None = None, create: bool = True) -> Path:
    """Resolve the directory for decoded-array caches, and create it unless `create` is False.

    Callers that can run uncached pass create=False and create it themselves when writing, so
    that an unwritable place costs a warning rather than a crash.
    """
    if path is not None:
        out = Path(path).expanduser()
    elif os.environ.get(CACHE_ENV):
        out = Path(os.environ[CACHE_ENV]).expanduser()
    elif (PROJECT_ROOT / "htlib").is_dir():
        out = PROJECT_ROOT / "data" / "cache"
    else:
        out = Path("data") / "cache"
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out


def offline(flag: bool = False) -> bool:
    """True when downloads are forbidden: by the caller, or by HTLIB_OFFLINE=1 (or true/yes)."""
    return flag or os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")
