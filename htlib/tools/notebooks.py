"""Run the numbered notebooks end to end with papermill (the project's main job)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from htlib.data import DATASETS
from htlib.data.base import DataError
from htlib.data.omniglot import download_omniglot, missing_files, omniglot_dir
from htlib.data.paths import OFFLINE_ENV, PROJECT_ROOT
from htlib.data.paths import offline as is_offline
from htlib.errors import ConfigError
from htlib.profiles import get_profile
from htlib.utils import resolve_device, write_atomic

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
OFFLINE_DEMO = "make run DATASET=synthetic   (or: python -m htlib notebooks --dataset synthetic)"


def list_notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in story order, optionally filtered by name prefix ("01", "02_")."""
    books = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        books = [b for b in books if any(b.name.startswith(o) for o in only)]
        if not books:
            raise ConfigError(f"No notebook in {NOTEBOOK_DIR} starts with any of {only}")
    return books


def require_dataset(dataset: str, data_dir: str | os.PathLike | None, offline: bool = False,
                    source: str | None = None) -> None:
    """Make sure the real data a run needs is on disk: fetch what is missing, verified, from the
    official source (or `source` / HTLIB_SOURCE); offline (or HTLIB_OFFLINE=1), stop with instructions."""
    if dataset != "omniglot":
        return
    missing = missing_files(data_dir)
    if not missing:
        return
    root = omniglot_dir(data_dir)
    if is_offline(offline):
        raise DataError(
            f"Omniglot is not on disk: {', '.join(missing)} missing in {root}, and downloads are off "
            f"(--offline or {OFFLINE_ENV}).\n"
            f"  - get it:   python -m htlib download omniglot   (or make download)\n"
            f"  - or point at a copy:   export HTLIB_DATA=DIR   (DIR/omniglot/ holds the two zips)\n"
            f"  - or run the offline demo on synthetic glyphs (results labelled 'synthetic'):\n"
            f"        {OFFLINE_DEMO}"
        )
    print(f"[htlib] Omniglot is not in {root} yet ({', '.join(missing)} missing): fetching it once.",
          flush=True)
    download_omniglot(data_dir, source=source)


def run_notebooks(
    profile: str = "quick",
    dataset: str = "omniglot",
    data_dir: str | None = None,
    device: str = "auto",
    out_dir: str | os.PathLike | None = None,
    only: list[str] | None = None,
    *,
    offline: bool = False,
    source: str | None = None,
) -> list[Path]:
    """Execute every notebook with the given parameters; executed copies go to out_dir.

    Omniglot is fetched first when it is not on disk, unless `offline` (see require_dataset).

    Returns the executed notebook paths. Raises papermill's PapermillExecutionError (with
    the failing cell) as soon as a notebook fails.
    """
    import papermill  # imported here: the library itself does not need it

    get_profile(profile)  # fail fast on a typo
    if dataset not in DATASETS:
        raise ConfigError(f"Unknown dataset {dataset!r}; choose one of {DATASETS}")
    resolve_device(device)
    books = list_notebooks(only)
    out = Path(out_dir) if out_dir else PROJECT_ROOT / "runs" / "notebooks" / f"{dataset}-{profile}"
    if out.resolve() == NOTEBOOK_DIR.resolve():  # refused before anything is fetched or run
        raise ConfigError(f"--out {out_dir}: the executions would replace the committed notebooks. Refresh those "
                          f"with `make notebooks` (python -m htlib notebooks --in-place), or choose another --out.")
    require_dataset(dataset, data_dir, offline, source)
    out.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, "dataset": dataset, "device": device,
              "data_dir": str(Path(data_dir).resolve()) if data_dir else None}
    done = []
    for book in books:
        start = time.perf_counter()
        target = out / book.name
        print(f"[htlib] running {book.name} ({profile}, {dataset}) -> {target}", flush=True)
        papermill.execute_notebook(str(book), str(target), parameters=params, cwd=str(NOTEBOOK_DIR),
                                   progress_bar=False, kernel_name="python3")
        print(f"[htlib] {book.name} done in {time.perf_counter() - start:.0f} s", flush=True)
        done.append(target)
    return done


def refresh_committed(only: list[str] | None = None, *, offline: bool = False,
                      source: str | None = None) -> list[Path]:
    """Re-execute the notebooks in place at their own defaults, which read the committed results.

    The notebooks are committed with these outputs, so that a reader on a code host sees every
    figure and table; CI re-executes them under strict nbval and compares (`make nbval-committed`).
    """
    import nbformat
    from nbclient import NotebookClient

    books = list_notebooks(only)
    require_dataset("omniglot", None, offline, source)  # the defaults read Omniglot from HTLIB_DATA / data/
    for book in books:
        start = time.perf_counter()
        nb = nbformat.read(book, as_version=4)
        NotebookClient(nb, timeout=1800, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
        nb.metadata.pop("widgets", None)  # progress-bar state: noise in a diff, useless on a code host
        write_atomic(book, lambda tmp: nbformat.write(nb, str(tmp)))
        print(f"[htlib] {book.name} refreshed in place in {time.perf_counter() - start:.0f} s", flush=True)
    return books
