"""htlib.tools.exec_notebook: runs a notebook's code without Jupyter, parameters injected."""

from __future__ import annotations

import nbformat
import pytest

from htlib.tools import exec_notebook


def _notebook(tmp_path, *sources, tagged=0):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title")] + [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[1 + tagged].metadata["tags"] = ["parameters"]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return str(path)


def test_parameters_replace_the_tagged_cell_values(tmp_path):
    out = tmp_path / "out.txt"
    path = _notebook(tmp_path, "profile = 'quick'\nsteps = 3", f"open({str(out)!r}, 'w').write(f'{{profile}} {{steps * 2}}')")
    exec_notebook.run(path, {"profile": exec_notebook.parse_value("ci"), "steps": exec_notebook.parse_value("5")})
    assert out.read_text() == "ci 10"


def test_a_failing_cell_names_the_notebook_and_the_cell(tmp_path):
    path = _notebook(tmp_path, "x = 1", "assert x == 2, 'wrong'")
    with pytest.raises(SystemExit, match="code cell 1 failed"):
        exec_notebook.run(path, {})
