"""How a training step runs fast: the episode sampler, the optimizer kernels, bf16, torch.compile.

Measured on one H100 at B = 16 (issue notes), the step was bound by the host, not the GPU: a
thousand small kernels, episodes sampled on the CPU and copied every step, and reads of tensor
values that made the host wait for the device. The trainer therefore
- samples on the device (`episodes_on_device`, htlib.data.device_episodes) where asked: by
  default on a GPU, not on the CPU, where the committed runs used the reference sampler;
- uses the multi-tensor ("foreach") optimizer and gradient clipping, and the fused AdamW kernel on
  a GPU: foreach gives bit for bit the per-parameter loop's numbers on the CPU; fused does not;
- reads loss and accuracy back only at log points (htlib.train) and skips the label-value checks
  for its own episodes (htlib.models.checks.trusted_episodes);
- optionally runs the step under bf16 autocast (`precision="bf16"`) and compiles the model
  (`compile=True`; on a GPU with CUDA graphs, "reduce-overhead"). Compiling changes the numbers in
  their last digits; bf16 by up to a few percent of the loss. tests/test_speed.py compares each
  with the eager fp32 step.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from htlib.data import ClassImages, EpisodeSampler
from htlib.data.device_episodes import DeviceEpisodeSampler

PRECISIONS = ("fp32", "bf16")


def episodes_on_device(setting: bool | None, device: torch.device) -> bool:
    """The `episodes_on_device` setting resolved: None means on a GPU, not on the CPU."""
    return device.type == "cuda" if setting is None else bool(setting)


def make_sampler(cfg, data: ClassImages, device: torch.device, batch_size: int, seed: int) -> EpisodeSampler:
    """The training sampler of a resolved TrainConfig (one process's share of the batch, its seed):
    on `device` if cfg.episodes_on_device."""
    task = (data, cfg.ways, cfg.shots, cfg.queries, cfg.unlabelled, cfg.distractors, batch_size,
            cfg.augment_rotations)
    if cfg.episodes_on_device:
        return DeviceEpisodeSampler(*task, seed=seed, augment_shift=cfg.augment_shift,
                                    independent_queries=cfg.independent_queries, device=device)
    return EpisodeSampler(*task, seed=seed, augment_shift=cfg.augment_shift, independent_queries=cfg.independent_queries)


def make_optimizer(cfg, params, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (this project's default), or plain SGD without momentum as the reference's
    GradientDescentOptimizer (docs/paper.md, section 2); multi-tensor kernels, fused on a GPU."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    kernel = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kernel)


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm to `max_norm` with multi-tensor kernels and no host sync."""
    return nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=True)


def autocast(precision: str, device: torch.device):
    """The context a training step runs in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_model(model: nn.Module, device: torch.device, backend: str | None = None) -> nn.Module:
    """The model compiled as one graph (fullgraph: a graph break is an error, not a slow step).

    On a GPU, "reduce-overhead" replays the step as CUDA graphs, which removes the launch cost of
    its many small kernels. `backend` overrides inductor (tests use "aot_eager": the same capture
    without minutes of C++ compilation on a small CPU).
    """
    if backend is not None:
        return torch.compile(model, backend=backend, fullgraph=True)
    mode = "reduce-overhead" if device.type == "cuda" else None
    return torch.compile(model, mode=mode, fullgraph=True)


def tune_backends(device: torch.device) -> None:
    """Let cuDNN pick the fastest convolution algorithms for the step's fixed shapes."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
