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

from helpers import TEST_DEVICE
from htlib.errors import ConfigError
from htlib.tools.notebooks import NOTEBOOK_DIR, list_notebooks, run_notebooks

OUT = Path(__file__).resolve().parents[1] / "build" / "notebooks-ci"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _data() -> tuple[str, str | None]:
    if os.environ.get("HTLIB_DATA"):
        return "omniglot", os.environ["HTLIB_DATA"]
    if (SHARED / "omniglot" / "images_background.zip").is_file():
        return "omniglot", str(SHARED)
    return "synthetic", None


@pytest.mark.numeric  # the notebooks' own asserts compare floats with tolerances
@pytest.mark.parametrize("notebook", list_notebooks(), ids=lambda p: p.name)
def test_notebook_runs_at_ci_profile(notebook):
    dataset, data_dir = _data()
    (executed,) = run_notebooks("ci", dataset, data_dir, TEST_DEVICE, OUT, only=[notebook.name])
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
    (executed,) = run_notebooks("ci", "synthetic", None, TEST_DEVICE, OUT.with_name("notebooks-ci-synthetic"),
                                only=[notebook.name])
    nb = nbformat.read(executed, as_version=4)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


VARIANTS = OUT.with_name("notebooks-ci-variants")
# Every documented value of the notebooks' enumerated parameters that the default runs above leave out.
DOCUMENTED_VALUES = [
    ("01_episodes", {"split_scheme": "lake"}),
    ("01_episodes", {"split_scheme": "reference"}),
    ("02_hypertransformer", {"generate": "logits"}),
    ("02_hypertransformer", {"generate": 2}),
]


def _execute(name: str, params: dict, out: Path) -> Path:
    import papermill

    dataset, data_dir = _data()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}-{'-'.join(f'{k}={v}' for k, v in params.items())}.ipynb"
    papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(target), cwd=str(NOTEBOOK_DIR),
                               parameters={"profile": "ci", "dataset": dataset, "data_dir": data_dir, **params},
                               progress_bar=False, kernel_name="python3")
    return target


@pytest.mark.parametrize("name, params", DOCUMENTED_VALUES, ids=lambda v: str(v))
def test_every_documented_parameter_value_runs(name, params):
    if "split_scheme" in params and _data()[0] != "omniglot":
        pytest.skip("split schemes are Omniglot's")
    nb = nbformat.read(_execute(name, params, VARIANTS), as_version=4)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("name, params, message", [
    ("01_episodes", {"ways": "20"}, "ways must be a whole number >= 2, got '20'"),
    ("02_hypertransformer", {"ways": 1}, "ways must be a whole number >= 2"),
    ("02_hypertransformer", {"shots": 15, "queries": 6}, "21 images per class"),
    ("03_generate_all_vs_last", {"channels": 8}, "channels must be a list"),
    ("04_semi_supervised", {"device": "tpu"}, "Unknown device 'tpu'"),
    ("05_results_vs_paper", {"ways": 0}, "ways must be a whole number >= 2"),
    ("06_training_the_ht", {"way": 5}, "Unknown notebook parameter ['way']; this notebook takes ['arms', "),
], ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_a_bad_parameter_fails_in_the_first_code_cell_with_the_cli_message(tmp_path, name, params, message):
    """Also a name the notebook does not have: papermill alone would run the notebook at its defaults."""
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as info:
        _execute(name, params, tmp_path)
    assert info.value.ename == "ConfigError" and message in info.value.evalue
    nb = nbformat.read(next(tmp_path.glob("*.ipynb")), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in code]
    first = next(i for i, t in enumerate(tags) if not {"parameters", "injected-parameters"} & set(t))
    assert any(o.get("output_type") == "error" for o in code[first].get("outputs", [])), \
        "the error must come from the first code cell after the parameters"


# ---------------------------------------------------------------- the committed notebooks


@pytest.mark.parametrize("notebook", list_notebooks(), ids=lambda p: p.name)
def test_committed_notebooks_are_executed_and_show_their_figures_on_a_code_host(notebook):
    """Committed with the outputs of `make notebooks`; their figures survive an HTML rendering."""
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "run `make notebooks`: a code cell has no output"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert [n for n in range(1, len(code) + 1)] == [c.execution_count for c in code], "executed top to bottom"
    # a clone elsewhere must re-execute to the same text: no absolute path of this checkout may show
    assert str(NOTEBOOK_DIR.parent) not in nbformat.writes(nb), "print paths relative to the project"
    figures = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert html.count('src="data:image/png;base64,') == figures
    shown = figures + sum("text/html" in o.get("data", {}) for c in code for o in c.outputs)
    assert shown > 0, "a teaching notebook shows at least one figure or table"


def test_strict_nbval_fails_when_a_shown_number_changes(tmp_path, omniglot_data_dir):
    """The committed outputs are a contract: change one digit of a shown number and nbval fails."""
    import os
    import re
    import subprocess
    import sys

    source = NOTEBOOK_DIR / "05_results_vs_paper.ipynb"  # the fastest notebook to re-execute
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and re.search(r"\d", out["text"]):
                out["text"] = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), out["text"], count=1)
                break
        else:
            continue
        break
    else:
        pytest.fail("no printed number in notebook 05 to change")
    changed = tmp_path / source.name
    nbformat.write(nb, changed)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval", "-p", "no:cacheprovider",
                           "--nbval-sanitize-with", str(Path(__file__).with_name("nbval_sanitize.cfg")), str(changed)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "HTLIB_DATA": str(omniglot_data_dir)})
    assert done.returncode != 0 and "mismatch" in done.stdout, done.stdout[-2000:]


def test_the_parameter_check_compares_papermills_cell_with_the_notebooks():
    from htlib.config import check_notebook_parameters

    params = 'profile = "quick"  # the budget\nways = 20\n'
    check_notebook_parameters(["", params, "import x"])  # not run by papermill: nothing to compare
    check_notebook_parameters(["", params, '# Parameters\nprofile = "ci"\n', "import x"])
    with pytest.raises(ConfigError, match=r"Unknown notebook parameters \['shot', 'way'\]; this notebook takes "
                                          r"\['profile', 'ways'\]"):
        check_notebook_parameters(["", params, '# Parameters\nway = 5\nshot = 1\nprofile = "ci"\n'])
