"""What each kind of results file holds, checked whenever one is read (pandera schemas).

The README and the notebooks are computed from these files, so a damaged one (a duplicated row
that would count as an extra seed, a renamed column, a number stored as text, a truncated file)
must stop the reader with one message that names the file, the row and the field, and says what
to do, before anything is computed or rewritten from it. One schema per kind of file:

- `sweep`: results/sweep_<profile>_<dataset>.csv, one row per (method, shots, C, seed);
- `semi`: results/semi_<profile>_<dataset>.csv, one row per method and condition;
- `recipe`: results/recipe_*.csv and results/fidelity_*.csv, one row per (arm, seed);
- `bench`: results/bench_*.csv, one row per measurement (htlib.tools.bench.TABLE_KEY);
- `step_parts`: results/step_parts_*.csv, one row per part of a step (htlib.tools.step_parts.TABLE_KEY);
- `grading`: results/grading_*.csv, one row per student and notebook graded (htlib.course.sample_class);
- `metrics`: a run's metrics.csv, one row per log point (validation accuracy where validated);
- `segments`, `tests`: a campaign's segments.csv and tests.csv (htlib.campaign);
- `result`: a run's result.json; `config`: a run's config.json (a TrainConfig's fields).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from htlib.errors import ConfigError, ResultsError

_fraction = pa.Check.in_range(0, 1)
_positive = pa.Check.gt(0)
_not_negative = pa.Check.ge(0)


def _columns(**specs) -> dict[str, pa.Column]:
    """name=(dtype, checks) -> pandera columns; a column with checks is required and never empty."""
    return {name: pa.Column(dtype, checks=checks, nullable=False, coerce=True) for name, (dtype, checks) in
            specs.items()}


_RUN = _columns(method=(str, None), shots=(int, _positive), channels=(int, _positive), seed=(int, _not_negative),
                test_accuracy=(float, _fraction), ci95=(float, _not_negative), test_episodes=(int, _positive),
                wall_seconds=(float, _not_negative))
_ARM = _columns(arm=(str, None), seed=(int, _not_negative), steps=(int, _positive), episodes=(int, _positive),
                test_accuracy=(float, _fraction), ci95=(float, _not_negative), wall_seconds=(float, _not_negative))

SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "sweep": pa.DataFrameSchema(_RUN, unique=["method", "shots", "channels", "seed"]),
    "semi": pa.DataFrameSchema({**_RUN, **_columns(train_unlabelled=(int, _not_negative),
                                                   test_unlabelled=(int, _not_negative),
                                                   test_distractors=(int, _not_negative))},
                               unique=["method", "shots", "channels", "seed", "train_unlabelled", "test_unlabelled",
                                       "test_distractors"]),
    "recipe": pa.DataFrameSchema(_ARM, unique=["arm", "seed"]),
    "bench": pa.DataFrameSchema(_columns(setting=(str, None), episodes_per_step=(int, _positive), device=(str, None),
                                         episodes_per_second=(float, _not_negative), threads=(int, _positive),
                                         date=(str, None)),
                                # older files lack the CPU model and C: one row per device, B and setting then
                                unique=["device", "threads", "episodes_per_step", "setting"]),
    "step_parts": pa.DataFrameSchema(_columns(part=(str, None), ms=(float, _not_negative),
                                              ms_median=(float, _not_negative), threads=(int, _positive),
                                              episodes_per_step=(int, _positive), date=(str, None)),
                                     unique=["device", "cpu", "threads", "channels", "episodes_per_step", "part"]),
    "grading": pa.DataFrameSchema(_columns(student=(str, None), notebook=(str, None), seconds=(float, _not_negative),
                                           kind=(str, None), points=(float, _not_negative),
                                           students=(int, _positive), timeout=(float, _positive),
                                           wall_seconds=(float, _not_negative), cpu=(str, None),
                                           threads=(int, _positive), date=(str, None)),
                                  unique=["student", "notebook"]),
    "segments": pa.DataFrameSchema(_columns(from_step=(int, _not_negative), to_step=(int, _not_negative),
                                            episodes=(int, _not_negative), wall_seconds=(float, _not_negative),
                                            cpu=(str, None)), unique=["from_step"]),
    "metrics": pa.DataFrameSchema({**_columns(step=(int, _positive), episodes=(int, _positive),
                                              loss=(float, None), accuracy=(float, _fraction)),
                                   "val_accuracy": pa.Column(float, _fraction, nullable=True, required=False,
                                                             coerce=True)},
                                  unique=["step"]),
    # a test may be repeated at the same step (`campaign --test-only`): rows are a log, with no key
    "tests": pa.DataFrameSchema(_columns(step=(int, _not_negative), shots=(int, _positive),
                                         test_accuracy=(float, _fraction), ci95=(float, _not_negative))),
}
# the bench's own key where a file has its columns (htlib.tools.bench.TABLE_KEY)
BENCH_KEY_NEW = ["device", "cpu", "threads", "channels", "episodes_per_step", "setting"]

_RESULT_FIELDS = {"method": str, "steps": int, "test_accuracy": float, "ci95": float, "wall_seconds": float}

def _fix(path: Path) -> str:
    return (f"restore it from git (`git checkout -- {path}`) or run again the command that writes it; nothing was "
            f"computed from it")


def _shown(value) -> str:
    """A failing cell as the file shows it."""
    if isinstance(value, float) and value != value:
        return "empty"
    return repr(value.item() if hasattr(value, "item") else value)


_KINDS = {"int64": "a whole number", "float64": "a number", "str": "text", "object": "text"}


def read_table(path: str | Path, kind: str) -> pd.DataFrame:
    """The CSV at `path`, checked against the schema of its kind; a ResultsError that names the
    file, the first bad row (its line in the file) and field otherwise."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file; run the command that writes it first.") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]}); {_fix(path)}.") from None
    schema = SCHEMAS[kind]
    if kind == "bench" and set(BENCH_KEY_NEW) <= set(table.columns):
        schema = pa.DataFrameSchema(schema.columns, unique=BENCH_KEY_NEW)
    try:
        return schema.validate(table, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise ResultsError(f"{path}: {_first_failure(exc.failure_cases, schema)}; {_fix(path)}.") from None


def _first_failure(cases: pd.DataFrame, schema: pa.DataFrameSchema) -> str:
    """One sentence for the first failure pandera found (file lines count the header as line 1)."""
    case = cases.iloc[0]
    column, check, value, index = case["column"], str(case["check"]), case["failure_case"], case["index"]
    where = f"line {int(index) + 2}, " if pd.notna(index) else ""
    if check == "column_in_dataframe":
        return f"the column {value!r} is missing (the file's columns were renamed or cut)"
    if "unique" in check or "duplicates" in check:
        rows = cases[cases["check"] == case["check"]]["index"].dropna().astype(int) + 2
        return (f"lines {', '.join(map(str, sorted(set(rows))[:6]))} repeat the same {'/'.join(schema.unique)}: a "
                f"duplicated row would count twice")
    if check.startswith("coerce_dtype"):
        wanted = check.split("(", 1)[1].rstrip(")").strip("'")
        return f"{where}column {column!r}: {_shown(value)} is not {_KINDS.get(wanted, wanted)}"
    if "not_nullable" in check:
        return f"{where}column {column!r} is empty"
    return f"{where}column {column!r}: {_shown(value)} fails {check}"


def read_result(path: str | Path) -> dict:
    """A run's result.json, with the fields every reader uses checked for presence and type."""
    path = Path(path)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); {_fix(path)}.") from None
    if not isinstance(result, dict):
        raise ResultsError(f"{path}: holds a {type(result).__name__}, not a run's result; {_fix(path)}.")
    for name, kind in _RESULT_FIELDS.items():
        value = result.get(name)
        ok = isinstance(value, kind) and not isinstance(value, bool) or (kind is float and isinstance(value, int)
                                                                         and not isinstance(value, bool))
        if not ok:
            found = "missing" if name not in result else f"{value!r}, not a {kind.__name__}"
            raise ResultsError(f"{path}: field {name!r} is {found}; {_fix(path)}.")
    if not 0 <= result["test_accuracy"] <= 1:
        raise ResultsError(f"{path}: field 'test_accuracy' is {result['test_accuracy']}, not in [0, 1]; {_fix(path)}.")
    return result


def read_config(path: str | Path) -> dict:
    """A run's config.json as the fields of a TrainConfig, each checked as TrainConfig checks a new
    one; a ResultsError that names the file and the field otherwise."""
    import dataclasses

    from htlib.config import TrainConfig
    from htlib.methods import upgrade_stored_config

    path = Path(path)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); {_fix(path)}.") from None
    stored = upgrade_stored_config(stored)  # one written before methods had names reads as today's
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not isinstance(stored, dict) or not set(stored) <= known:
        what = f"unknown fields {sorted(set(stored) - known)}" if isinstance(stored, dict) else type(stored).__name__
        raise ResultsError(f"{path}: not the settings of an htlib run ({what}); {_fix(path)}.")
    try:
        TrainConfig(**stored).resolved()
    except ConfigError as exc:
        raise ResultsError(f"{path}: {exc} {_fix(path).capitalize()}.") from None
    return stored
