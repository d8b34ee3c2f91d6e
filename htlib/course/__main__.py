"""python -m htlib.course student | grade: the teacher's two commands (needs the `course` extra).

    python -m htlib.course student           # write notebooks/student/ from the teacher's notebooks
    python -m htlib.course student --check   # fail if the committed student versions are stale
    python -m htlib.course grade FOLDER      # FOLDER/<student>/01_episodes.ipynb ... -> grades.csv, summary.csv
    python -m htlib.course time-class --students 30 --out results/grading_class_cpu.csv  # the grader at class size
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from htlib.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m htlib.course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    student = sub.add_parser("student", help="build the student versions into notebooks/student/")
    student.add_argument("--check", action="store_true", help="only compare a fresh build with the committed files")
    student.add_argument("--out", type=Path, default=None, help="folder to write (default notebooks/student/)")
    grade = sub.add_parser("grade", help="grade a folder of submissions, one subfolder per student")
    grade.add_argument("folder", type=Path)
    grade.add_argument("--out", type=Path, default=None,
                       help="where grades.csv, summary.csv and executed/ go (default runs/grades/<folder name>/)")
    grade.add_argument("--profile", default="ci", help="profile injected into every notebook (default: ci)")
    grade.add_argument("--timeout", type=float, default=None,
                       help="seconds per cell; a cell past it is interrupted and the notebook goes on (default: 300)")
    grade.add_argument("--regrade", action="store_true",
                       help="grade every student again (default: keep the students graded before in --out)")
    grade.add_argument("--dataset", default=None, help="omniglot | synthetic (default: each notebook's own)")
    grade.add_argument("--data-dir", default=None, help="folder holding omniglot/ (default: HTLIB_DATA, else ./data)")
    grade.add_argument("--only", nargs="*", default=None, help="notebook prefixes to grade, e.g. 01 04")
    timed = sub.add_parser("time-class", help="grade a made-up class (htlib.course.sample_class) and time it")
    timed.add_argument("--students", type=int, default=30, help="class size (default: 30)")
    timed.add_argument("--timeout", type=float, default=None, help="seconds per cell (default: the grader's, 300)")
    timed.add_argument("--out", type=Path, required=True, help="CSV to write: one row per student and notebook")
    timed.add_argument("--data-dir", default=None, help="folder holding omniglot/ (default: HTLIB_DATA, else ./data)")
    timed.add_argument("--only", nargs="*", default=None, help="notebook prefixes to grade, e.g. 01 04")
    args = parser.parse_args(argv)
    try:
        import nbgrader  # noqa: F401  (the course extra)
    except ImportError:
        print("the course tools need nbgrader: pip install -e '.[course]'  (or: make student)", file=sys.stderr)
        return 2
    try:
        if args.command == "student":
            return _student(args)
        if args.command == "time-class":
            return _time_class(args)
        return _grade(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _student(args) -> int:
    from htlib.course.release import STUDENT_DIR, build, stale

    out = args.out or STUDENT_DIR
    if args.check:
        problems = stale(out)
        for line in problems:
            print(f"stale: {line}", file=sys.stderr)
        if problems:
            print("the student versions do not match the teacher's notebooks: run `make student` and commit "
                  "notebooks/student/", file=sys.stderr)
            return 1
        print(f"student versions in {out} match the teacher's notebooks")
        return 0
    for path in build(out):
        print(f"wrote {path}")
    return 0


def _grade(args) -> int:
    from htlib.course.grade import (
        DEFAULT_TIMEOUT,
        default_out_dir,
        grade_folder,
        summary,
    )

    out = args.out or default_out_dir(args.folder)
    table = grade_folder(args.folder, out, profile=args.profile, timeout=args.timeout or DEFAULT_TIMEOUT,
                         dataset=args.dataset, data_dir=args.data_dir, only=args.only, regrade=args.regrade)
    print(summary(table).to_string(index=False))
    print(f"wrote {out / 'grades.csv'} ({len(table)} rows), {out / 'summary.csv'}, {out / 'gradebook.csv'}, one "
          f"feedback file per student in {out / 'feedback'} and the executed notebooks in {out / 'executed'}")
    return 0


def _time_class(args) -> int:
    from htlib.course.grade import DEFAULT_TIMEOUT
    from htlib.course.sample_class import time_class
    from htlib.errors import ConfigError

    if args.students < 1:
        raise ConfigError(f"--students must be at least 1, got {args.students}")
    out = time_class(args.students, args.timeout or DEFAULT_TIMEOUT, args.out, args.data_dir, args.only)
    per_student = out.groupby("student").seconds.sum()
    print(f"{args.students} students graded in {out.wall_seconds.iloc[0]:.0f} s (median {per_student.median():.0f} s "
          f"per student, slowest {per_student.max():.0f} s); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
