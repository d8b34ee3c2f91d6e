"""Run the numbered notebooks end to end with papermill (the project's main job)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from htlib.data.base import DataError
from htlib.data.omniglot import ARCHIVES, omniglot_dir
from htlib.data.paths import PROJECT_ROOT
from htlib.profiles import get_profile

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
OFFLINE_DEMO = "make run DATASET=synthetic   (or: python -m htlib notebooks --dataset synthetic)"


def list_notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in story order, optionally filtered by name prefix ("01", "02_")."""
    books = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        books = [b for b in books if any(b.name.startswith(o) for o in only)]
        if not books:
            raise ValueError(f"No notebook in {NOTEBOOK_DIR} starts with any of {only}")
    return books


def require_dataset(dataset: str, data_dir: str | os.PathLike | None) -> None:
    """Stop early, with instructions, when the real data a run needs is not on disk."""
    if dataset != "omniglot":
        return
    root = omniglot_dir(data_dir)
    missing = [name for name in ARCHIVES.values() if not (root / name).is_file()]
    if missing:
        raise DataError(
            f"Omniglot is not on disk: {', '.join(missing)} missing in {root}.\n"
            f"  - get it:   python -m htlib download omniglot   (or make run DOWNLOAD=1)\n"
            f"  - or point at a copy:   export HTLIB_DATA=DIR   (DIR/omniglot/ holds the two zips)\n"
            f"  - or run the offline demo on synthetic glyphs (results labelled 'synthetic'):\n"
            f"        {OFFLINE_DEMO}"
        )


def run_notebooks(
    profile: str = "quick",
    dataset: str = "omniglot",
    data_dir: str | None = None,
    device: str = "auto",
    out_dir: str | os.PathLike | None = None,
    only: list[str] | None = None,
) -> list[Path]:
    """Execute every notebook with the given parameters; executed copies go to out_dir.

    Returns the executed notebook paths. Raises papermill's PapermillExecutionError (with
    the failing cell) as soon as a notebook fails.
    """
    import papermill  # imported here: the library itself does not need it

    get_profile(profile)  # fail fast on a typo
    require_dataset(dataset, data_dir)
    out = Path(out_dir) if out_dir else PROJECT_ROOT / "runs" / "notebooks" / f"{dataset}-{profile}"
    out.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, "dataset": dataset, "device": device,
              "data_dir": str(Path(data_dir).resolve()) if data_dir else None}
    done = []
    for book in list_notebooks(only):
        start = time.perf_counter()
        target = out / book.name
        print(f"[htlib] running {book.name} ({profile}, {dataset}) -> {target}", flush=True)
        papermill.execute_notebook(str(book), str(target), parameters=params, cwd=str(NOTEBOOK_DIR),
                                   progress_bar=False, kernel_name="python3")
        print(f"[htlib] {book.name} done in {time.perf_counter() - start:.0f} s", flush=True)
        done.append(target)
    return done
