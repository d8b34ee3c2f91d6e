"""Command line: `python -m htlib <command> ...` (see `python -m htlib --help`)."""

from __future__ import annotations

import argparse
import json
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


def _add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="omniglot", help="omniglot | synthetic | miniimagenet")
    p.add_argument("--split-scheme", default="vinyals", help="Omniglot: vinyals | lake | reference")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--ways", type=int, default=20)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--queries", type=int, default=3, help="query images per class")
    p.add_argument("--unlabelled", type=int, default=0, help="unlabelled support images per class")
    p.add_argument("--method", default="ht")
    p.add_argument("--generate", default="all", help="HT: all | logits | number of last conv layers")
    p.add_argument("--channels", type=int, default=8, help="channels C of the target CNN")
    p.add_argument("--profile", default="quick", help="ci | quick | long | paper")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--episodes-per-step", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)


def _config(args: argparse.Namespace):
    from htlib.train import TrainConfig

    generate = int(args.generate) if str(args.generate).isdigit() else args.generate
    return TrainConfig(
        dataset=args.dataset, split_scheme=args.split_scheme, data_dir=args.data_dir, ways=args.ways,
        shots=args.shots, queries=args.queries, unlabelled=args.unlabelled, method=args.method,
        generate=generate, channels=args.channels, profile=args.profile, steps=args.steps,
        episodes_per_step=args.episodes_per_step, device=args.device, seed=args.seed,
        lr=getattr(args, "lr", 1e-3))


def _train(args: argparse.Namespace) -> None:
    from htlib.train import train

    out = train(_config(args), args.run_dir, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(out.result, indent=2))


def _eval(args: argparse.Namespace) -> None:
    from htlib.data import EpisodeSampler, load_split
    from htlib.evaluate import evaluate
    from htlib.train import EVAL_SEED, load_trained

    model, cfg = load_trained(args.checkpoint, args.device)
    ways, shots = args.ways or cfg.ways, args.shots or cfg.shots
    data = load_split(cfg.dataset, args.split, args.data_dir or cfg.data_dir, split_scheme=cfg.split_scheme)
    sampler = EpisodeSampler(data, ways, shots, args.queries or cfg.queries, args.unlabelled,
                             batch_size=args.batch_size, seed=args.seed if args.seed is not None else EVAL_SEED)
    acc = evaluate(model, sampler, args.episodes, next(model.parameters()).device, progress=not args.json)
    if args.json:
        print(json.dumps({**acc.as_dict(), "split": args.split, "dataset": cfg.dataset,
                          "checkpoint": str(args.checkpoint)}))
    else:
        print(f"{cfg.dataset}/{args.split}: {acc}")


def _bench(args: argparse.Namespace) -> None:
    from htlib.bench import benchmark

    rows = benchmark(_config(args), steps=args.bench_steps)
    for row in rows:
        print(json.dumps(row))
    print(f"batched / per-episode loop: {rows[0]['speedup']:.2f}x")


def _sweep(args: argparse.Namespace) -> None:
    from htlib.sweep import SweepSpec, run_sweep

    spec = SweepSpec(profile=args.profile, dataset=args.dataset, ways=args.ways, shots=args.shots,
                     channels=args.channels, methods=args.methods, seeds=args.seeds,
                     data_dir=args.data_dir, device=args.device)
    table = run_sweep(spec, progress=not args.no_progress, workers=args.workers, max_minutes=args.max_minutes)
    print(f"{len(table)} cells in {spec.table_path}")


def _semi(args: argparse.Namespace) -> None:
    from htlib.semi import SemiSpec, run_semi

    spec = SemiSpec(profile=args.profile, dataset=args.dataset, ways=args.ways, shots=args.shots,
                    channels=args.channels, seed=args.seed, methods=args.methods,
                    train_unlabelled=args.train_unlabelled, test_unlabelled=args.test_unlabelled,
                    distractors=args.distractors, data_dir=args.data_dir, device=args.device)
    table = run_semi(spec, progress=not args.no_progress)
    print(f"{len(table)} rows in {spec.table_path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m htlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("download", help="fetch a dataset from its official source")
    p.add_argument("dataset", choices=["omniglot"])
    p.add_argument("--data-dir", default=None, help="target data directory (default: HTLIB_DATA or ./data)")
    p.add_argument("--force", action="store_true", help="download again even if the files exist")
    p.set_defaults(func=_download)

    p = commands.add_parser("notebooks", help="run the numbered notebooks end to end with papermill")
    p.add_argument("--profile", default="quick", help="ci | quick | long | paper")
    p.add_argument("--dataset", default="omniglot", help="omniglot | synthetic")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="folder for the executed copies (default runs/notebooks/...)")
    p.add_argument("--only", nargs="*", default=None, help="notebook name prefixes, e.g. 01 03")
    p.set_defaults(func=_notebooks)

    p = commands.add_parser("train", help="train one method; resumable from RUN_DIR/checkpoint.pt")
    _add_task_args(p)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--run-dir", required=True, help="checkpoint, metrics.csv and result.json go here")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    p = commands.add_parser("eval", help="test accuracy with 95%% CI of a trained checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--ways", type=int, default=None, help="default: as trained")
    p.add_argument("--shots", type=int, default=None, help="default: as trained")
    p.add_argument("--queries", type=int, default=None)
    p.add_argument("--unlabelled", type=int, default=0)
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--split", default="test")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=None, help="episode seed (default: the shared test seed)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_eval)

    p = commands.add_parser("bench", help="training episodes/s: batched step vs per-episode loop")
    _add_task_args(p)
    p.set_defaults(episodes_per_step=16)
    p.add_argument("--bench-steps", type=int, default=10)
    p.set_defaults(func=_bench)

    p = commands.add_parser("sweep", help="train every (method, C, shots, seed) cell; skips finished cells")
    p.add_argument("--profile", default="quick")
    p.add_argument("--dataset", default="omniglot")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--ways", type=int, default=20)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    p.add_argument("--channels", type=int, nargs="+", default=[4, 6, 8, 16, 32, 64])
    p.add_argument("--methods", nargs="+", default=None,
                   help="default: ht-all ht-logits protonet and the profile's MAML variant")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--workers", type=int, default=1, help="cells trained at once, one process each")
    p.add_argument("--max-minutes", type=float, default=None, help="start no new cell after this long")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_sweep)

    p = commands.add_parser("semi", help="unlabelled support samples: continue each supervised run with "
                                         "and without them, test at several U (notebook 04)")
    p.add_argument("--profile", default="quick")
    p.add_argument("--dataset", default="omniglot")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--ways", type=int, default=20)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=["ht-all", "ht-logits", "protonet-softkmeans"])
    p.add_argument("--train-unlabelled", type=int, default=5, help="U per class in the unlabelled arm")
    p.add_argument("--test-unlabelled", type=int, nargs="+", default=[0, 1, 2, 5, 10])
    p.add_argument("--distractors", type=int, default=5, help="distractor classes in one extra test")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_semi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
