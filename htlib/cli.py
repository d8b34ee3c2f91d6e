"""Command line: `python -m htlib <command> ...` (see `python -m htlib --help`)."""

from __future__ import annotations

import argparse
import json
import sys

from htlib.data.protocols import PROTOCOLS, protocol_settings
from htlib.errors import ConfigError
from htlib.methods import METHODS
from htlib.profiles import PROFILES


def _download(args: argparse.Namespace) -> None:
    from htlib.data.omniglot import download_omniglot

    if args.dataset != "omniglot":
        raise SystemExit("Only Omniglot can be downloaded automatically; see data/README.md for miniImageNet.")
    print(f"Omniglot files are in {download_omniglot(args.data_dir, force=args.force, source=args.source)}")


def _notebooks(args: argparse.Namespace) -> None:
    from htlib.tools.notebooks import refresh_committed, run_notebooks

    if args.in_place:
        refresh_committed(args.only, offline=args.offline)
        return
    run_notebooks(args.profile, args.dataset, args.data_dir, args.device, args.out, args.only,
                  offline=args.offline)


# Every option is declared once, here; each command names the ones it takes (see build_parser).
OPTIONS: dict[str, dict] = {
    "profile": dict(default="quick", choices=list(PROFILES), help="compute budget"),
    "dataset": dict(default="omniglot", help="omniglot | synthetic | miniimagenet"),
    "split-scheme": dict(default=None, help="Omniglot class split: vinyals (default) | lake | reference | paper"),
    "protocol": dict(default=None, choices=list(PROTOCOLS),
                     help="the episodes as one name (htlib.data.protocols): vinyals (default) | paper (the "
                          "authors' split and independent queries)"),
    "data-dir": dict(default=None, help="folder holding omniglot/ (default: HTLIB_DATA, else ./data)"),
    "device": dict(default="auto", help="auto (a GPU if there is one) | cpu | cuda[:N] | mps"),
    "ways": dict(type=int, default=20, help="N, classes per episode (>= 2)"),
    "shots": dict(type=int, default=1, help="K, labelled support images per class"),
    "queries": dict(type=int, default=3, help="query images per class"),
    "unlabelled": dict(type=int, default=0, help="unlabelled support images per class"),
    "method": dict(default="ht-all", help=f"{' | '.join(METHODS)} | ht-<n> (the HT writing its last n conv layers)"),
    "channels": dict(type=int, default=8, help="channels C of the target CNN"),
    "steps": dict(type=int, default=None, help="optimizer steps (default: the profile's)"),
    "episodes-per-step": dict(type=int, default=None, help="B, episodes batched in one step (default: the profile's)"),
    "lr": dict(type=float, default=1e-3, help="peak learning rate of AdamW"),
    "seed": dict(type=int, default=0, help="seed of initialisation and training episodes"),
    "warmup-steps": dict(type=int, default=None, help="steps of linear lr warm-up (default: 5%% of the steps)"),
    "precision": dict(default="fp32", choices=["fp32", "bf16"], help="bf16: the training step under bf16 autocast"),
    "compile": dict(action="store_true", help="torch.compile the model (CUDA graphs on a GPU); minutes to compile"),
    "episodes-on-device": dict(action=argparse.BooleanOptionalAction, default=None,
                               help="sample training episodes on the device (default: on a GPU, not on the CPU)"),
    "no-progress": dict(action="store_true", help="one log line per log point instead of a bar"),
}
# The HyperTransformer's own knobs (htlib.models.HTConfig fields); unset ones keep HTConfig's defaults
# and stay out of the run's config, so that its folder and committed results are those of the default.
MODEL_OPTIONS: dict[str, tuple[str, dict]] = {
    "transformer-layers": ("transformer_layers", dict(type=int, help="HT: encoder layers per generated layer (3)")),
    "heads": ("heads", dict(type=int, help="HT: attention heads (2)")),
    "label-dim": ("label_dim", dict(type=int, help="HT: label_dim, the size d of label and placeholder embeddings (32)")),
    "local-features": ("local_features", dict(type=int, help="HT: local features per token, 0 = none (8)")),
    "shared-features": ("shared_features", dict(type=int, help="HT: shared features per token, 0 = none (32)")),
    "dropout": ("dropout", dict(type=float, help="HT: dropout in the transformers (0)")),
    "tie-logits-placeholders": ("tie_logits_placeholders", dict(
        action=argparse.BooleanOptionalAction, help="HT departure 1: logits placeholders = label embeddings (on)")),
    "match-query-key-init": ("match_query_key_init", dict(
        action=argparse.BooleanOptionalAction, help="HT departure 2: equal query/key projections at init (on)")),
    "normalize-features": ("normalize_features", dict(
        action=argparse.BooleanOptionalAction, help="HT departure 3: standardised local/shared features (on)")),
    "label-embedding-per-layer": ("label_embedding_per_layer", dict(
        action=argparse.BooleanOptionalAction, help="HT: one label-embedding table per generated layer (off; the "
                                                    "reference: on)")),
    "init": ("init", dict(choices=["torch", "glorot"], help="HT: initialisation (torch; the reference: glorot)")),
    "bn-eps": ("bn_eps", dict(type=float, help="HT: BatchNorm epsilon of the target CNN (1e-5; the reference: 1e-3)")),
    "feature-extractors": ("feature_extractors", dict(
        choices=["project", "reference"], help="HT: local feature extractors (project; the reference's: 'valid' "
                                               "convs, both outputs)")),
}
TASK = ("profile", "dataset", "split-scheme", "protocol", "data-dir", "device", "ways", "shots", "queries", "unlabelled",
        "method", "channels", "steps", "episodes-per-step", "lr", "seed", "warmup-steps",
        "precision", "compile", "episodes-on-device")


def _add(p: argparse.ArgumentParser, *names: str, **changed: dict) -> None:
    """Add the named options of OPTIONS; `changed` overrides fields (e.g. shots=dict(nargs="+"))."""
    for name in names:
        p.add_argument(f"--{name}", **{**OPTIONS[name], **changed.get(name.replace("-", "_"), {})})


def _add_model_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("HyperTransformer options (the exercises' knobs)")
    for flag, (_, spec) in MODEL_OPTIONS.items():
        group.add_argument(f"--{flag}", default=None, **spec)


def _config(args: argparse.Namespace):
    from htlib.config import TrainConfig

    model_options = {field: getattr(args, flag.replace("-", "_")) for flag, (field, _) in MODEL_OPTIONS.items()
                     if getattr(args, flag.replace("-", "_")) is not None}
    task = protocol_settings(args.protocol) if args.protocol else {}
    if args.split_scheme is not None:
        if args.protocol and args.split_scheme != task["split_scheme"]:
            raise ConfigError(f"--protocol {args.protocol} uses the {task['split_scheme']!r} split; drop "
                              f"--split-scheme {args.split_scheme} or the protocol.")
        task["split_scheme"] = args.split_scheme
    return TrainConfig(
        dataset=args.dataset, data_dir=args.data_dir, ways=args.ways, **task,
        shots=args.shots, queries=args.queries, unlabelled=args.unlabelled, method=args.method,
        channels=args.channels, profile=args.profile, steps=args.steps,
        episodes_per_step=args.episodes_per_step, device=args.device, seed=args.seed, lr=args.lr,
        warmup_steps=args.warmup_steps, precision=args.precision, compile=args.compile,
        episodes_on_device=args.episodes_on_device, model_options=model_options)


def _launch_processes(args: argparse.Namespace) -> None:
    """Run this train command again as `--processes` data-parallel processes under torchrun's
    launcher (htlib.distributed): each trains on its share of every step's episodes, with an equal
    share of the CPU threads, and DDP averages their gradients."""
    import os

    import torch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from htlib.errors import UserError

    cfg = _config(args).resolved()
    if cfg.episodes_per_step % args.processes:  # refused here, before any process starts
        raise ConfigError(f"--processes {args.processes}: the {cfg.episodes_per_step} episodes per step cannot be "
                          f"split evenly; use a number of processes that divides them, or set --episodes-per-step.")
    argv, skip = [], False
    for word in args.argv:  # the same command without --processes, which each process must not see
        if skip or word.startswith("--processes="):
            skip = False
            continue
        skip = word == "--processes"
        argv += [] if skip else [word]
    threads = os.environ.get("OMP_NUM_THREADS")  # the processes inherit the environment: set for them only
    os.environ["OMP_NUM_THREADS"] = str(max(1, torch.get_num_threads() // args.processes))
    try:
        run(get_args_parser().parse_args(["--standalone", f"--nproc_per_node={args.processes}", "-m", "htlib",
                                          *argv]))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        raise UserError(f"training process {rank} of {args.processes} stopped with exit code {failure.exitcode}; "
                        f"its own message is above.") from None
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = threads


def _train(args: argparse.Namespace) -> None:
    from htlib.train import train

    if args.processes < 1:
        raise ConfigError(f"--processes must be >= 1, got {args.processes}.")
    if args.processes > 1:
        _launch_processes(args)
        return
    from htlib.distributed import launched_rank

    out = train(_config(args), args.run_dir, resume=args.resume, progress=not args.no_progress,
                overwrite=args.overwrite)
    if launched_rank() == 0:  # one result on the screen, however many processes trained
        print(json.dumps(out.result, indent=2))


def _eval(args: argparse.Namespace) -> None:
    from htlib.errors import ConfigError
    from htlib.evaluate import evaluate
    from htlib.methods import get_method
    from htlib.train import EVAL_SEED, load_trained
    from htlib.utils import resolve_device

    resolve_device(args.device)
    for name in ("episodes", "batch_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    model, cfg = load_trained(args.checkpoint, args.device, args.data_dir)
    ways, shots, queries = (cfg_value if arg is None else arg for arg, cfg_value in
                            [(args.ways, cfg.ways), (args.shots, cfg.shots), (args.queries, cfg.queries)])
    any_ways = get_method(cfg.method).any_ways
    if ways < 2 or (not any_ways and ways > cfg.ways):
        upper = "any number" if any_ways else f"at most {cfg.ways}"
        raise ConfigError(f"--ways {ways}: this {cfg.method} model was trained for {cfg.ways}-way tasks and "
                          f"takes from 2 to {upper} classes.")
    # the protocol it was trained on (independent queries or not), with the support set asked for
    sampler = cfg.task.eval_sampler(args.split, args.batch_size, seed=args.seed if args.seed is not None else EVAL_SEED,
                                    ways=ways, shots=shots, queries=queries, unlabelled=args.unlabelled, distractors=0)
    acc = evaluate(model, sampler, args.episodes, next(model.parameters()).device, progress=not args.json)
    if args.json:
        print(json.dumps({**acc.as_dict(), "split": args.split, "dataset": cfg.dataset,
                          "checkpoint": str(args.checkpoint)}))
    else:
        print(f"{cfg.dataset}/{args.split}: {acc}")


def _bench(args: argparse.Namespace) -> None:
    from htlib.tools.bench import benchmark, line, write_table

    if args.parts:
        import dataclasses

        from htlib.tools import step_parts

        cfg = dataclasses.replace(_config(args).resolved(), episodes_per_step=args.batches[0]).resolved()
        rows = step_parts.step_parts(cfg, repeats=args.repeats)
        for row in rows:
            print(json.dumps(row) if args.json else f"{row['part']:<40} {row['ms']:8.2f} ms "
                  f"(median {row['ms_median']:.2f})")
        if args.out:
            write_table(rows, args.out, key=step_parts.TABLE_KEY, order=())
            print(f"{len(rows)} rows added to {args.out}")
        return

    def report(row: dict) -> None:
        print(json.dumps(row) if args.json else line(row), flush=True)
        if args.out:  # row by row: a bench stopped by a time limit keeps what it measured
            write_table([row], args.out)

    rows = benchmark(_config(args), steps=args.bench_steps, batches=tuple(args.batches),
                     settings=tuple(args.settings), report=report, repeats=args.repeats)
    if args.out:
        print(f"{len(rows)} rows added to {args.out}")


def _sweep(args: argparse.Namespace) -> None:
    from htlib.experiments.sweep import SweepSpec, run_sweep

    spec = SweepSpec(profile=args.profile, dataset=args.dataset, ways=args.ways, shots=args.shots,
                     channels=args.channels, methods=args.methods, seeds=args.seeds,
                     data_dir=args.data_dir, device=args.device)
    table = run_sweep(spec, progress=not args.no_progress, workers=args.workers, max_minutes=args.max_minutes)
    print(f"{len(table)} cells in {spec.table_path}")


def _semi(args: argparse.Namespace) -> None:
    from htlib.experiments.semi import SemiSpec, run_semi

    spec = SemiSpec(profile=args.profile, dataset=args.dataset, ways=args.ways, shots=args.shots,
                    channels=args.channels, seed=args.seed, **({"methods": args.methods} if args.methods else {}),
                    train_unlabelled=args.train_unlabelled, test_unlabelled=args.test_unlabelled,
                    distractors=args.distractors, data_dir=args.data_dir, device=args.device)
    table = run_semi(spec, progress=not args.no_progress)
    print(f"{len(table)} rows in {spec.table_path}")


def _recipe(args: argparse.Namespace) -> None:
    from htlib.experiments.recipe import RecipeSpec, run_recipe

    spec = RecipeSpec(profile=args.profile, seeds=args.seeds, arms=args.arms, data_dir=args.data_dir,
                      device=args.device, dataset=args.dataset, ways=args.ways, study=args.study,
                      protocol=args.protocol or "vinyals")
    table = run_recipe(spec, progress=not args.no_progress, max_minutes=args.max_minutes)
    print(f"{len(table)} runs in {spec.table_path}")


def _campaign(args: argparse.Namespace) -> None:
    from htlib.campaign import CampaignSpec, retest, run_campaign

    if (args.minutes is None) == (not args.test_only):
        raise ConfigError("campaign needs --minutes M (train a segment, then test) or --test-only "
                          "(test the best weights so far), not both.")
    model_options = {field: getattr(args, flag.replace("-", "_")) for flag, (field, _) in MODEL_OPTIONS.items()
                     if getattr(args, flag.replace("-", "_")) is not None}
    if args.shots < 1:
        raise ConfigError(f"--shots must be >= 1, got {args.shots}.")
    spec = CampaignSpec(protocol=args.protocol or "paper", model_options=model_options, seed=args.seed,
                        data_dir=args.data_dir, device=args.device, profile=args.profile, shots=args.shots)
    if args.test_only:
        retest(spec)
    else:
        run_campaign(spec, args.minutes, args.save_minutes, progress=not args.no_progress)


def _readme(args: argparse.Namespace) -> None:
    from htlib.tools.readme import update

    if update(check=args.check):
        raise SystemExit(1)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default beside its meaning, but not the noise of "default: None"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def _command(commands, name: str, help: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m htlib", description=__doc__, formatter_class=_HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = _command(commands, "download", help="fetch a dataset from its official source")
    p.add_argument("dataset", choices=["omniglot"], help="the dataset to fetch")
    p.add_argument("--data-dir", default=None, help="target data directory (default: HTLIB_DATA or ./data)")
    p.add_argument("--force", action="store_true", help="download again even if the files exist")
    p.add_argument("--source", default=None,
                   help="base address to fetch from instead of the official one (default: HTLIB_SOURCE, "
                        "else the official source)")
    p.set_defaults(func=_download)

    p = _command(commands, "notebooks", help="run the numbered notebooks end to end with papermill")
    _add(p, "profile", "dataset", "data-dir", "device", dataset=dict(help="omniglot | synthetic"))
    p.add_argument("--out", default=None, help="folder for the executed copies (default runs/notebooks/...)")
    p.add_argument("--only", nargs="*", default=None, help="notebook name prefixes, e.g. 01 03")
    p.add_argument("--offline", action="store_true",
                   help="never download: stop with instructions when Omniglot is missing (also HTLIB_OFFLINE=1)")
    p.add_argument("--in-place", action="store_true",
                   help="re-execute notebooks/*.ipynb in place at their defaults (the committed outputs)")
    p.set_defaults(func=_notebooks)

    p = _command(commands, "train", help="train one method; resumable from RUN_DIR/checkpoint.pt")
    _add(p, *TASK, "no-progress")
    _add_model_options(p)
    p.add_argument("--run-dir", required=True, help="checkpoint, metrics.csv and result.json go here")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a trained run in RUN_DIR that has no checkpoint to resume (e.g. a committed one)")
    p.add_argument("--processes", type=int, default=1,
                   help="data-parallel processes, each with its share of the threads and of every step's episodes "
                        "(torchrun, htlib.distributed; the bench's `2proc`); a resumed run keeps its number")
    p.set_defaults(func=_train)

    p = _command(commands, "eval", help="test accuracy with 95%% CI of a trained run")
    p.add_argument("--checkpoint", required=True,
                   help="a run folder, its model.pt (config.json beside it) or a checkpoint.pt")
    _add(p, "ways", "shots", "queries", "unlabelled", "data-dir", "device",
         ways=dict(default=None, help="N (default: as trained)"),
         shots=dict(default=None, help="K (default: as trained)"),
         queries=dict(default=None, help="query images per class (default: as trained)"),
         data_dir=dict(help="folder holding omniglot/ (default: as trained)"))
    p.add_argument("--episodes", type=int, default=600, help="test episodes for the mean and its 95%% CI")
    p.add_argument("--batch-size", type=int, default=32, help="episodes evaluated at once")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="the split to draw from")
    p.add_argument("--seed", type=int, default=None, help="episode seed (default: the shared test seed)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_eval)

    p = _command(commands, "bench", help="training episodes/s, GFLOP/s, share of peak and memory, per B and setting")
    _add(p, *TASK)
    _add_model_options(p)
    p.add_argument("--bench-steps", type=int, default=10, help="timed training steps per block")
    p.add_argument("--repeats", type=int, default=3, help="blocks per row; the fastest counts")
    p.add_argument("--batches", type=int, nargs="+", default=[16], help="batch sizes B to time")
    p.add_argument("--settings", nargs="+", default=["old", "new"],
                   help="loop | old | untuned | unfused | new | 2proc | bf16 | compile | compile+bf16 "
                   "(htlib.tools.bench)")
    p.add_argument("--parts", action="store_true",
                   help="time each part of one HyperTransformer step instead (htlib.tools.step_parts; "
                        "--repeats calls each, at the first of --batches; e.g. --out results/step_parts_cpu.csv)")
    p.add_argument("--json", action="store_true", help="print one JSON object per row instead of lines")
    p.add_argument("--out", default=None, help="also add the rows to this CSV (e.g. results/bench_cpu.csv; same device, B, setting: replaced)")
    p.set_defaults(func=_bench)

    p = _command(commands, "sweep", help="train every (method, C, shots, seed) cell; skips finished cells")
    _add(p, "profile", "dataset", "data-dir", "device", "ways", "shots", "channels", "no-progress",
         shots=dict(nargs="+", default=[1, 5], help="K values, labelled images per class"),
         channels=dict(nargs="+", default=[4, 6, 8, 16, 32, 64], help="CNN sizes C"))
    p.add_argument("--methods", nargs="+", default=None,
                   help="default: ht-all ht-logits protonet and the profile's MAML variant")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    p.add_argument("--workers", type=int, default=1, help="cells trained at once, one process each")
    p.add_argument("--max-minutes", type=float, default=None, help="start no new cell after this long")
    p.set_defaults(func=_sweep)

    p = _command(commands, "semi", help="unlabelled support samples: continue each supervised run with "
                                         "and without them, test at several U (notebook 04)")
    _add(p, "profile", "dataset", "data-dir", "device", "ways", "shots", "channels", "seed", "no-progress")
    p.add_argument("--methods", nargs="+", default=None,
                   help="methods to compare (default: every method that uses unlabelled samples)")
    p.add_argument("--train-unlabelled", type=int, default=5, help="U per class in the unlabelled arm")
    p.add_argument("--test-unlabelled", type=int, nargs="+", default=[0, 1, 2, 5, 10],
                   help="U per class at test, one test each")
    p.add_argument("--distractors", type=int, default=5, help="distractor classes in one extra test")
    p.set_defaults(func=_semi)

    p = _command(commands, "recipe", help="the training-recipe study (or, with --study fidelity, the reference's "
                                           "choices put back): a baseline and arms that change one thing each, "
                                           "at one budget (notebook 06)")
    _add(p, "profile", "dataset", "data-dir", "device", "ways", "protocol", "no-progress")
    p.add_argument("--study", default="recipe", choices=["recipe", "fidelity"],
                   help="recipe: htlib.experiments.recipe.ARMS; fidelity: FIDELITY_ARMS, on --protocol")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    p.add_argument("--arms", nargs="+", default=None,
                   help="arms to train now (default: all of htlib.experiments.recipe.ARMS; the baseline always)")
    p.add_argument("--max-minutes", type=float, default=None, help="start no new run after this long")
    p.set_defaults(func=_recipe)

    p = _command(commands, "campaign", help="train the long campaign run toward 4M episodes for a while, "
                                             "resuming it; checkpoints, curve, best model, one segment row")
    _add(p, "profile", "protocol", "data-dir", "device", "seed", "shots", "no-progress",
         profile=dict(default="campaign", help="the budget (campaign: 4M episodes; ci: a smoke run)"),
         shots=dict(help="1: the campaign; K > 1: the fine-tune of its best weights at K shots, on a tenth "
                         "of its steps (a run of its own)"),
         protocol=dict(default=None, choices=list(PROTOCOLS), help="the episodes as one name "
                       "(htlib.data.protocols): paper (default here: the reference's split, on which "
                       "the 96.2%% is measured) | vinyals"))
    _add_model_options(p)
    p.add_argument("--minutes", type=float, default=None, help="train at most this long, then stop cleanly "
                                                                 "and test the best weights at 1 and 5 shots")
    p.add_argument("--test-only", action="store_true", help="train nothing: test the best weights so far "
                                                             "(a row per shot count in tests.csv)")
    p.add_argument("--save-minutes", type=float, default=10.0, help="checkpoint at least this often (10)")
    p.set_defaults(func=_campaign)

    p = _command(commands, "readme", help="rewrite README.md's result sections from the files in results/")
    p.add_argument("--check", action="store_true",
                   help="only compare: exit 1 with a short diff when README.md disagrees with results/")
    p.set_defaults(func=_readme)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user's mistake is one line on stderr and exit code 2; a bug keeps its
    traceback; Ctrl-C during training says how to resume and exits with 130."""
    from htlib.errors import UserError

    args = build_parser().parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])  # a command that relaunches itself needs them
    try:
        args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        from htlib.train import TrainingInterrupted

        if isinstance(exc, TrainingInterrupted) and exc.checkpoint is not None:
            command = " ".join(["python -m htlib", *(argv if argv is not None else sys.argv[1:])])
            if args.command == "train" and "--resume" not in command.split():
                command += " --resume"  # the experiments (sweep, semi, recipe) always resume
            print(f"{exc}. Resume with: {command}", file=sys.stderr)
        else:
            print(f"interrupted{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return 130
    return 0
