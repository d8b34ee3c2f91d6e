"""The optimisation recipe of a run, in one place: optimizer, learning-rate schedule (warm-up, then a
decay), gradient clipping and precision. TrainConfig names them (optimizer, schedule, lr,
weight_decay, warmup_steps, grad_clip, precision); the trainer gets them from here.

This project's default departs from the reference scripts (4M single-episode plain-SGD steps with a
smooth x0.95 decay per 100k steps; docs/paper.md, section 2): AdamW on B episodes per step, a short
linear warm-up and a cosine decay, with gradient-norm clipping. That reaches useful accuracy in
orders of magnitude fewer steps. The reference's choices stay reachable (`optimizer="sgd"`,
`schedule="reference"`, `episodes_per_step=1`) for the recipe study (htlib.experiments.recipe).
"""

from __future__ import annotations

import contextlib
import warnings
import math
from collections.abc import Callable

import torch
from torch import nn

import htlib.speed as speed
from htlib.cpu import cpu_model, native_bf16

OPTIMIZERS = ("adamw", "sgd")  # "sgd": plain SGD, no momentum, as the reference (docs/paper.md, section 2)
# The learning rate after the linear warm-up: "cosine" decays to 5% of lr by the last step (this
# project's default); "constant" stays at lr; "reference" decays smoothly by x0.95 per 1/40 of the
# run, the reference's x0.95 per 100k of its 4M steps scaled to this run (docs/paper.md, section 2).
SCHEDULES = ("cosine", "constant", "reference")
PRECISIONS = ("fp32", "bf16")  # bf16: the training step under bf16 autocast
# The reference decays lr by x0.95 every 100k of its 4M steps: 40 periods (docs/paper.md, section 2).
REFERENCE_DECAY, REFERENCE_PERIODS = 0.95, 40


def lr_factor(cfg) -> Callable[[int], float]:
    """The factor on lr before optimizer step `step` (0-based): a linear warm-up over
    cfg.warmup_steps, then the shape cfg.schedule names (SCHEDULES)."""
    def cosine(step: int) -> float:  # 1 until the warm-up ends, then down to 5% of lr at the last step
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))

    def reference(step: int) -> float:  # tf exponential_decay without staircase, over this run's length
        return REFERENCE_DECAY ** (step / (cfg.steps / REFERENCE_PERIODS))

    decay = {"cosine": cosine, "constant": lambda step: 1.0, "reference": reference}[cfg.schedule]

    def factor(step: int) -> float:
        ramp = (step + 1) / cfg.warmup_steps if step < cfg.warmup_steps else 1.0
        return ramp * decay(step)  # the reference has no warm-up: its decay runs from step 0
    return factor


def make_optimizer(cfg, params, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (this project's default), or plain SGD without momentum as the reference's
    GradientDescentOptimizer (docs/paper.md, section 2), with the kernels of `kernels`."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kernels("sgd", device))
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kernels("adamw", device))


def kernels(optimizer: str, device: torch.device) -> dict[str, bool | None]:
    """How the optimizer runs: AdamW fused (one kernel for all parameters; on the CPU several times
    faster than the multi-tensor kernels: `python -m htlib bench --settings unfused new`), except on
    the CPU with HTLIB_FAST_KERNELS=0 (the multi-tensor kernels of before); SGD multi-tensor, bit for
    bit the per-parameter loop (the reference arms)."""
    fused = optimizer == "adamw" and (device.type == "cuda" or speed.fast_kernels_enabled())
    return {"fused": True, "foreach": None} if fused else {"fused": None, "foreach": True}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a checkpoint's optimizer state but keep this process's kernels: a state dict carries the
    kernel flags of the process that wrote it, and they are this code's choice, not a run's state."""
    flags = [{key: group[key] for key in ("fused", "foreach")} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, flags):
        group.update(kept)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate of every step: cfg.lr times lr_factor(cfg)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg))


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm to `max_norm` with multi-tensor kernels and no host sync."""
    return nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=True)


def autocast(precision: str, device: torch.device):
    """The context a training step runs in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def warn_if_slow_precision(precision: str, device: torch.device) -> None:
    """bf16 on a CPU without bf16 hardware is emulated, and the run takes several times as long as
    fp32: say so once, before training, rather than let a user find out hours later."""
    if precision == "bf16" and device.type == "cpu" and not native_bf16():
        warnings.warn(f"--precision bf16 on {cpu_model()}, which has no bf16 hardware (neither avx512_bf16 nor "
                      "amx_bf16 in /proc/cpuinfo): each step will be several times slower than in fp32. Use "
                      "--precision fp32 (the default) on this CPU.", RuntimeWarning, stacklevel=2)
