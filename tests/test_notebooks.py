"""Every numbered notebook runs end to end with papermill at the `ci` profile.

The executed copies land in build/notebooks-ci/, where `make nbval` re-executes and checks
them with nbval. A notebook fails here as soon as one of its cells raises (its asserts
included). With real Omniglot available (HTLIB_DATA or ../shared/data) the notebooks run
on it; otherwise they run on the synthetic dataset, and say so.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from htlib.notebooks import list_notebooks, run_notebooks

OUT = Path(__file__).resolve().parents[1] / "build" / "notebooks-ci"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _data() -> tuple[str, str | None]:
    if os.environ.get("HTLIB_DATA"):
        return "omniglot", os.environ["HTLIB_DATA"]
    if (SHARED / "omniglot" / "images_background.zip").is_file():
        return "omniglot", str(SHARED)
    return "synthetic", None


@pytest.mark.parametrize("notebook", list_notebooks(), ids=lambda p: p.name)
def test_notebook_runs_at_ci_profile(notebook):
    dataset, data_dir = _data()
    (executed,) = run_notebooks("ci", dataset, data_dir, "auto", OUT, only=[notebook.name])
    nb = nbformat.read(executed, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "each notebook needs exactly one cell tagged 'parameters'"
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert any(o.get("output_type") == "display_data" for c in nb.cells for o in c.get("outputs", [])), \
        "a teaching notebook shows at least one figure or table"


@pytest.mark.parametrize("notebook", list_notebooks(), ids=lambda p: p.name)
def test_notebook_runs_offline_on_synthetic_data(notebook):
    """The offline demo the README promises (no Omniglot on disk) must run too."""
    (executed,) = run_notebooks("ci", "synthetic", None, "auto", OUT.with_name("notebooks-ci-synthetic"),
                                only=[notebook.name])
    nb = nbformat.read(executed, as_version=4)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
