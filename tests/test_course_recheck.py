"""htlib.course.recheck: the grader's second check, outside the student's kernel, on the solution
cell alone. Honest answers pass it; the cheap cheats of the issue fail it."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest

from htlib.course.exercises import EXERCISES
from htlib.course.recheck import definitions_of, imports_of, recheck, recheck_notebook
from htlib.course.release import nbgrader_meta, teacher_notebooks

IMPORTS = "import math\nimport torch"
HONEST = '''
def mean_ci95(per_episode):
    n = per_episode.numel()
    mean = per_episode.float().mean().item()
    return mean, 1.96 * per_episode.float().std().item() / math.sqrt(n)
'''


def _solution(key: str) -> tuple[str, str]:
    """The teacher's solution cell of `key` and the imports of the cells before it."""
    nb = nbformat.read(teacher_notebooks()[EXERCISES[key].notebook], as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == key)
    return imports_of([c.source for c in nb.cells[:at] if c.cell_type == "code"]), nb.cells[at].source


@pytest.mark.parametrize("key", list(EXERCISES))
def test_every_teachers_solution_passes_on_its_own_cell(key):
    assert recheck(key, *_solution(key))["status"] == "passed"


def test_an_honest_answer_passes_and_the_references_are_restored():
    reference = EXERCISES["mean_ci95"].reference
    assert recheck("mean_ci95", IMPORTS, HONEST)["status"] == "passed"
    assert EXERCISES["mean_ci95"].reference is reference


@pytest.mark.parametrize("cheat, said", [
    ("def mean_ci95(x):\n    from htlib.course import EXERCISES\n    return EXERCISES['mean_ci95'].reference(x)",
     "calls htlib's reference solution (mean_ci95)"),
    ("from htlib.course.exercises import mean_ci95 as solution\ndef mean_ci95(x):\n    return solution(x)",
     "calls htlib's reference solution (mean_ci95)"),
    ("import htlib.course\nhtlib.course.check = lambda *a: None\n" + HONEST.replace("1.96", "2.5"),
     "times the right width"),  # the patch does not run here: the wrong factor is found
    ("def mean_ci95(x):\n    import torch\n    torch.isclose = lambda *a, **k: torch.tensor(True)\n    return 0.0, 0.0",
     "replaced library functions while it was checked (torch.isclose)"),
    ("def cheat(f):\n    return f\n@cheat\n" + HONEST.strip(), "has a decorator"),
    ("def mean_ci95(x, _=__import__('os')):\n    return 0.0, 0.0", "calls something when it is defined"),
    ("def helper():\n    return 0.5\n", "does not define `mean_ci95`"),
])
def test_the_cheap_cheats_fail(cheat, said):
    result = recheck("mean_ci95", IMPORTS, cheat)
    assert result["status"] != "passed" and said in result["message"], result


def test_only_definitions_of_the_solution_cell_run():
    kept = definitions_of("import torch\nX = 3\nprint('hi')\ntorch.manual_seed(0)\ndef f():\n    return X\n")
    assert kept.splitlines() == ["import torch", "X = 3", "", "def f():", "    return X"]
    assert imports_of(["import torch\nx = 1", "%matplotlib inline", "from math import sqrt"]) == \
        "import torch\nfrom math import sqrt"


def test_the_grader_runs_it_in_a_process_of_its_own(tmp_path):
    results = recheck_notebook([{"key": "mean_ci95", "imports": IMPORTS, "solution": HONEST},
                                {"key": "gap_ci", "imports": "", "solution": "def gap_ci(*a):\n    return 0, 0, 'x'"}],
                               timeout=120, cwd=tmp_path)
    assert results["mean_ci95"]["status"] == "passed" and results["gap_ci"]["status"] == "wrong"
    slow = recheck_notebook([{"key": "mean_ci95", "imports": "import time",
                              "solution": "def mean_ci95(x):\n    time.sleep(60)"}], timeout=5, cwd=tmp_path)
    assert slow["mean_ci95"]["status"] == "error" and "ran past 5 s" in slow["mean_ci95"]["message"]
    assert json.loads(json.dumps(results)) == results and sys.executable
