"""Training on several processes (GPUs) with torchrun and DistributedDataParallel.

`torchrun --nproc_per_node=N -m htlib train ...` starts N copies of the same command; torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK) tells each which one it is. The trainer then
- splits each step's B episodes evenly: every process draws B / N of them from its own seed
  stream (one stream per rank, derived from the run's seed), so no two draw the same episodes;
- lets DDP average the gradients, which for equal shares is the gradient of the mean loss over all
  B episodes: the step of a single process with batch B (tests/test_distributed.py checks this);
- averages the logged loss and accuracy over the processes at log points only;
- writes checkpoints, metrics and results from rank 0 alone; a checkpoint holds every rank's
  sampler state, so `--resume` continues each stream (with the same number of processes).

One process (plain `python -m htlib train`) is a world of size 1 and none of this runs.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from htlib.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """Each process of a multi-GPU run takes the GPU of its local rank."""
        if device.type == "cuda" and self.size > 1:
            return torch.device("cuda", self.local_rank)
        return device

    def share(self, batch: int) -> int:
        """Episodes per step for this process; refuses a B the processes cannot split evenly."""
        if batch % self.size:
            raise ConfigError(f"episodes_per_step = {batch} cannot be split evenly over {self.size} processes; "
                              f"use a multiple of {self.size}.")
        return batch // self.size

    def seed(self, seed: int) -> int:
        """The episode seed of this rank: the run's seed itself for one process, else an independent
        stream per rank (numpy's SeedSequence spawns non-overlapping children)."""
        if self.size == 1:
            return seed
        return int(np.random.SeedSequence(seed).spawn(self.size)[self.rank].generate_state(1)[0])

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of `values` over the processes (the values themselves for one process)."""
        if self.size == 1:
            return values
        total = values.clone()
        dist.all_reduce(total)
        return total / self.size

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process if `flag` is True on any one (e.g. a Ctrl-C seen by some)."""
        if self.size == 1:
            return flag
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, obj) -> list:
        """Every process's `obj`, in rank order (on every process)."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


def launched_rank() -> int:
    """This process's rank under torchrun (0 without it), known before the process group exists."""
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def current_world(device: torch.device) -> World:
    """The World of this process, joining torchrun's process group on first use (gloo on the CPU,
    NCCL on GPUs). Without torchrun's environment: a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    return world


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
