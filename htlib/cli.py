"""Command line: `python -m htlib <command> ...` (see `python -m htlib --help`)."""

from __future__ import annotations

import argparse
import sys

from htlib.data.base import DataError


def _download(args: argparse.Namespace) -> None:
    from htlib.data.omniglot import download_omniglot

    if args.dataset != "omniglot":
        raise SystemExit("Only Omniglot can be downloaded automatically; see data/README.md for miniImageNet.")
    print(f"Omniglot files are in {download_omniglot(args.data_dir, force=args.force)}")


def _notebooks(args: argparse.Namespace) -> None:
    from htlib.notebooks import run_notebooks

    run_notebooks(args.profile, args.dataset, args.data_dir, args.device, args.out, args.only)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m htlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("download", help="fetch a dataset from its official source")
    p.add_argument("dataset", choices=["omniglot"])
    p.add_argument("--data-dir", default=None, help="target data directory (default: HTLIB_DATA or ./data)")
    p.add_argument("--force", action="store_true", help="download again even if the files exist")
    p.set_defaults(func=_download)

    p = commands.add_parser("notebooks", help="run the numbered notebooks end to end with papermill")
    p.add_argument("--profile", default="quick", help="ci | quick | paper")
    p.add_argument("--dataset", default="omniglot", help="omniglot | synthetic")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="folder for the executed copies (default runs/notebooks/...)")
    p.add_argument("--only", nargs="*", default=None, help="notebook name prefixes, e.g. 01 03")
    p.set_defaults(func=_notebooks)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
