"""The checks again, outside the student's kernel, so that the grade does not depend on anything
the submission can change.

In the student's kernel a check runs after every cell before it: a cell that replaced
`htlib.course.check`, or a function that calls htlib's reference, could pass it. So the grader
also runs each exercise's check in a fresh Python process of its own (`python -m
htlib.course.recheck`), on the student's solution cell alone:

- only its definitions are executed (imports, functions, classes, constants), after the import
  statements of the notebook's cells before it; no other statement of the notebook runs, so a
  patch made in some cell does not exist there. A definition whose decorator or default value
  calls something is refused (it would run code when defined);
- while the answer runs, htlib's reference solutions are traps: an answer that calls one fails;
- the library functions a check relies on (torch, torch.nn.functional, torch.Tensor, numpy,
  math, builtins and htlib's modules) are compared before and after: an answer that replaced one
  fails.

What it does not protect against is in docs/teaching.md: an answer that computes the result with
htlib's own library code (e.g. the model's functions the exercise rebuilds), or that reads the
check's inputs and hard-codes the expected outputs, is not told apart from an honest one.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import contextvars
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

# the answer is running (the reference traps fire only then)
_IN_ANSWER = contextvars.ContextVar("in_answer", default=False)
KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class DefinitionError(Exception):
    """The solution cell holds a definition that would run code when defined."""


def imports_of(sources: list[str]) -> str:
    """The import statements of these cells' sources (cells that are not plain Python are skipped)."""
    lines = []
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines)


def definitions_of(source: str) -> str:
    """The definitions of a solution cell: imports, functions, classes and constant assignments."""
    tree = ast.parse(source)
    kept = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            kept.append(node)
        elif isinstance(node, KEPT):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                _refuse_code_at_definition(node)
            kept.append(node)
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


def _refuse_code_at_definition(node) -> None:
    """A definition may not run code when it is defined: no decorator, and no call in its defaults,
    annotations or base classes; a class's body holds only definitions and constants."""
    if node.decorator_list:
        raise DefinitionError(f"`{node.name}` has a decorator, which runs code when it is defined: define it plainly")
    if isinstance(node, ast.ClassDef):
        outside_body = node.bases + [k.value for k in node.keywords]
        for inner in node.body:
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                _refuse_code_at_definition(inner)
            elif not (isinstance(inner, ast.Expr | ast.Assign) and isinstance(inner.value, ast.Constant)):
                raise DefinitionError(f"class `{node.name}` runs statements in its body: keep only methods there")
    else:
        outside_body = [node.args, *([node.returns] if node.returns else [])]
    if any(isinstance(inner, ast.Call) for part in outside_body for inner in ast.walk(part)):
        raise DefinitionError(f"`{node.name}` calls something when it is defined (in a default value, an "
                              f"annotation or a base class): define it plainly")


# ---------------------------------------------------------------- in the fresh process


def _guarded_modules() -> list:
    import numpy
    import torch
    import torch.nn.functional

    htlib_modules = [m for name, m in sys.modules.items() if name.startswith("htlib") and m is not None]
    return [torch, torch.nn.functional, torch.Tensor, numpy, math, builtins, *htlib_modules]


@contextlib.contextmanager
def _library_unchanged(found: list[str]):
    """Appends to `found` the names of library attributes that differ after the block."""
    before = [(m, dict(vars(m))) for m in _guarded_modules()]
    yield
    for module, attrs in before:
        now = vars(module)
        changed = [name for name, value in attrs.items() if now.get(name, value) is not value]
        found += [f"{getattr(module, '__name__', module)}.{name}" for name in changed]


@contextlib.contextmanager
def _reference_traps(called: list[str]):
    """htlib's reference solutions, while the answer runs, record that they were called (they still
    return their value, so that the check goes on and says what else it finds)."""
    from htlib.course import exercises

    def trap(key, reference):
        def trapped(*args, **kwargs):
            if _IN_ANSWER.get():
                called.append(key)
            return reference(*args, **kwargs)
        return trapped

    table, saved = exercises.EXERCISES, dict(exercises.EXERCISES)
    module_names = {key: name for key, ex in saved.items() for name, value in vars(exercises).items()
                    if value is ex.reference}
    try:
        for key, ex in saved.items():
            table[key] = dataclasses.replace(ex, reference=trap(key, ex.reference))
            if key in module_names:
                setattr(exercises, module_names[key], table[key].reference)
        yield
    finally:
        table.update(saved)
        for key, name in module_names.items():
            setattr(exercises, name, saved[key].reference)


def recheck(key: str, imports: str, solution: str) -> dict:
    """Run exercise `key`'s check on the definitions of `solution`; {status, message, hint}."""
    from htlib.course.answers import check
    from htlib.course.exercises import EXERCISES

    exercise = EXERCISES[key]  # bound before any of the student's code runs
    try:
        code = definitions_of(solution)
    except DefinitionError as error:
        return {"status": "wrong", "message": str(error), "hint": "a plain `def` in the solution cell"}
    except SyntaxError as error:
        return {"status": "error", "message": f"the solution cell is not valid Python: {error}", "hint": ""}
    called, changed = [], []
    with _reference_traps(called):  # before the student's imports, which could keep a reference otherwise
        namespace: dict = {"__name__": "__submission__"}
        try:
            exec(compile(imports, "<notebook imports>", "exec"), namespace)  # noqa: S102 (the grader's own process)
            exec(compile(code, "<solution cell>", "exec"), namespace)  # noqa: S102
        except Exception as error:  # noqa: BLE001 (whatever the student's definitions raise is reported)
            return {"status": "error", "message": f"defining it raised {type(error).__name__}: {error}",
                    "hint": "the solution cell must define the function by itself, with the notebook's imports"}
        answer = namespace.get(key)
        if not callable(answer):
            return {"status": "wrong", "message": f"the solution cell does not define `{key}`",
                    "hint": f"keep `def {key}(...)` in its cell"}

        def running(*args, **kwargs):
            token = _IN_ANSWER.set(True)
            try:
                return answer(*args, **kwargs)
            finally:
                _IN_ANSWER.reset(token)

        with _library_unchanged(changed):
            result = check(exercise, running)
    if called:
        return {"status": "wrong", "message": f"it calls htlib's reference solution ({', '.join(sorted(set(called)))})",
                "hint": "write the computation yourself"}
    if changed:
        return {"status": "wrong", "message": f"it replaced library functions while it was checked "
                                              f"({', '.join(changed[:5])})", "hint": "do not assign to modules"}
    return {"status": result.status, "message": result.message, "hint": result.hint}


def main() -> int:
    """Read [{key, imports, solution}, ...] as JSON from stdin; print a JSON list of results."""
    items = json.load(sys.stdin)
    print(json.dumps([{"key": item["key"], **recheck(item["key"], item["imports"], item["solution"])}
                      for item in items]))
    return 0


# ---------------------------------------------------------------- from the grader


def recheck_notebook(items: list[dict], timeout: float, cwd: Path) -> dict[str, dict]:
    """Run `recheck` for each {key, imports, solution} in a fresh process (in `cwd`, an empty folder
    of the grader's); {key: result}. A process that fails or runs past `timeout` seconds gives every
    exercise an error result that says so."""
    if not items:
        return {}
    try:
        done = subprocess.run([sys.executable, "-m", "htlib.course.recheck"], input=json.dumps(items),
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)
        results = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except subprocess.TimeoutExpired:
        done, results = None, None
        why = f"the check outside the notebook ran past {timeout:g} s"
    except (json.JSONDecodeError, IndexError):
        results = None
    if results is None:
        if done is not None:
            why = f"the check outside the notebook failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
        return {item["key"]: {"status": "error", "message": why, "hint": ""} for item in items}
    return {r["key"]: r for r in results}


if __name__ == "__main__":
    raise SystemExit(main())
