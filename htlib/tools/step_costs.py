"""Seconds per training step of every sweep method across CNN sizes (sizes the sweep's budget).

Usage: python -m htlib.tools.step_costs [--shots 1 5] [--channels 4 8 ...] [--out results/step_costs_cpu.csv]

One warm-up step, then the mean of `--steps` timed steps, for each (method, C, shots), on the
training split of the chosen dataset with the sweep's episode shape (20-way; 3 queries per class
at 1-shot, 5 at 5-shot) and the `quick` profile's sweep batch size.
"""

from __future__ import annotations

import argparse
import platform
import time

import pandas as pd
import torch

from htlib.experiments.sweep import SweepSpec
from htlib.methods import compared_methods
from htlib.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="omniglot")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--channels", type=int, nargs="+", default=[4, 6, 8, 16, 32, 64])
    parser.add_argument("--methods", nargs="+", default=compared_methods())
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="results/step_costs_cpu.csv")
    args = parser.parse_args()
    spec = SweepSpec(profile="quick", dataset=args.dataset, shots=args.shots, channels=args.channels,
                     methods=args.methods)
    rows = []
    for cell in spec.cells():
        cfg = cell.config
        trainer = Trainer(cfg)  # no folder: nothing is written
        trainer.train_step()  # warm-up
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        seconds = (time.perf_counter() - start) / args.steps
        rows.append({"method": cfg.method, "shots": cfg.shots, "channels": cfg.channels,
                     "episodes_per_step": trainer.cfg.episodes_per_step, "seconds_per_step": round(seconds, 4),
                     "device": str(trainer.device), "threads": torch.get_num_threads(),
                     "machine": platform.processor() or platform.machine()})
        print(rows[-1], flush=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
