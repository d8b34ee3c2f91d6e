"""Run by tests/test_distributed.py under torchrun (2 processes, gloo): `python -m torch.distributed.run
--standalone --nproc_per_node=2 tests/ddp_worker.py MODE FOLDER`."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch.distributed as dist
import torch.nn.functional as F
from test_train import tiny

from htlib.data import EpisodeSampler
from htlib.evaluate import episode_logits
from htlib.train import Trainer, train


def gradients(folder: Path) -> None:
    """DDP's averaged gradient over two halves of a batch against one process's gradient of the whole."""
    trainer = Trainer(tiny(episodes_per_step=4), None)  # joins the process group; same init on both ranks
    rank, size = trainer.world.rank, trainer.world.size
    batch = EpisodeSampler(trainer.train_data, 5, 1, 2, batch_size=4, seed=11).sample()
    half = batch.select(slice(2 * rank, 2 * rank + 2))
    plain = copy.deepcopy(trainer.model)  # new parameters, outside DDP's gradient hooks
    logits = episode_logits(plain, batch)
    F.cross_entropy(logits.flatten(0, 1), batch.query_labels.flatten()).backward()
    whole = [p.grad for p in plain.parameters()]
    logits = episode_logits(trainer.step_model, half)  # step_model: the DDP-wrapped model
    F.cross_entropy(logits.flatten(0, 1), half.query_labels.flatten()).backward()
    averaged = [p.grad for p in trainer.model.parameters()]
    # float sums in another order: compare each difference with the largest gradient entry
    worst = max(float((a - w).abs().max()) for a, w in zip(averaged, whole))
    largest = max(float(w.abs().max()) for w in whole)
    if rank == 0:
        (folder / "gradients.json").write_text(json.dumps({"processes": size, "worst": worst, "largest": largest}))


def main() -> None:
    mode, folder = sys.argv[1], Path(sys.argv[2])
    cfg = tiny(episodes_per_step=4)
    if mode == "gradients":
        gradients(folder)
    elif mode == "stop":
        Trainer(cfg, folder).fit(progress=False, stop_at=3)
    else:  # "train": from scratch, or on from the folder's checkpoint
        train(cfg, folder, progress=False)
    dist.barrier()


if __name__ == "__main__":
    main()
