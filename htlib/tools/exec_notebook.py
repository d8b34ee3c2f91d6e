"""Execute notebooks without Jupyter: for machines that have torch but no papermill (a GPU box).

Usage: python -m htlib.tools.exec_notebook NB.ipynb [NB2.ipynb ...] [-p name=value ...]

The code cells run in order in one namespace, as a kernel would run them; `-p` values replace
the assignments of the cell tagged "parameters" (run right after it, like papermill's injected
cell). `display` prints. A failing cell stops with its notebook, cell number and source.
This checks that the notebook code runs on a device; the real main job uses papermill.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
import traceback


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word such as cuda or ci


def run(path: str, params: dict) -> float:
    cells = [c for c in json.load(open(path))["cells"] if c["cell_type"] == "code"]
    namespace = {"__name__": "__main__", "display": lambda *objs: print(*objs)}
    start = time.perf_counter()
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        try:
            exec(compile(source, f"{path}[cell {i}]", "exec"), namespace)
        except Exception:
            traceback.print_exc()
            raise SystemExit(f"{path}: code cell {i} failed:\n{source}") from None
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            namespace.update(params)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("-p", "--param", action="append", default=[], help="name=value")
    args = parser.parse_args()
    params = {}
    for item in args.param:
        name, _, value = item.partition("=")
        params[name] = parse_value(value)
    for path in args.notebooks:
        print(f"{path}: ran in {run(path, params):.1f} s with {params}", flush=True)


if __name__ == "__main__":
    main()
