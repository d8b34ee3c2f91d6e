"""How a training step runs fast: the episode sampler, the optimizer kernels, bf16, torch.compile
(the optimizer, clipping and bf16 themselves are the recipe's: htlib.optim).

Measured on one H100 at B = 16 (issue notes), the step was bound by the host, not the GPU: a
thousand small kernels, episodes sampled on the CPU and copied every step, and reads of tensor
values that made the host wait for the device. The trainer therefore
- samples on the device (`episodes_on_device`, htlib.data.device_episodes) where asked: by
  default on a GPU, not on the CPU, where the committed runs used the reference sampler;
- uses the fused AdamW kernel and multi-tensor ("foreach") gradient clipping, and PyTorch's fused
  attention wherever the attention maps are not asked for (`HTLIB_FAST_KERNELS=0`: the multi-tensor
  AdamW and the written-out attention of before, which round differently in the last digits);
- reads loss and accuracy back only at log points (htlib.train) and skips the label-value checks
  for its own episodes (htlib.models.checks.trusted_episodes);
- optionally runs the step under bf16 autocast (`precision="bf16"`) and compiles the model
  (`compile=True`; on a GPU with CUDA graphs, "reduce-overhead"). Compiling changes the numbers in
  their last digits; bf16 by up to a few percent of the loss. tests/test_speed.py compares each
  with the eager fp32 step.

On the CPU it also keeps freed memory in the process (`tune_allocator`): the step allocates and
frees the same few large buffers (e.g. max-pool's full-size gradient) every time, and glibc by
default hands each one back to the kernel and takes it again, paying a page fault per 4 KiB on
every first touch. `HTLIB_CPU_TUNING=0` leaves glibc's defaults (the step as before, to measure).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
from unittest import mock

import torch
from torch import nn


def episodes_on_device(setting: bool | None, device: torch.device) -> bool:
    """The `episodes_on_device` setting resolved: None means on a GPU, not on the CPU."""
    return device.type == "cuda" if setting is None else bool(setting)


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


FAST_KERNELS_SWITCH = "HTLIB_FAST_KERNELS"  # "0": the step's kernels as before (to measure against)


def fast_kernels_enabled() -> bool:
    """The fused kernels of the step: AdamW's fused kernel (also on the CPU) and, where the attention
    maps are not asked for, PyTorch's fused attention. Same arithmetic, other rounding order: a step
    differs from the unfused one in its last digits (tests/test_speed.py). On by default."""
    return os.environ.get(FAST_KERNELS_SWITCH, "1") != "0"


@contextlib.contextmanager
def without_fast_kernels():
    """The switch off for a block of this process (the bench's FLOP count), then as it was."""
    with mock.patch.dict(os.environ, {FAST_KERNELS_SWITCH: "0"}):
        yield


CPU_TUNING_SWITCH = "HTLIB_CPU_TUNING"  # "0": glibc's allocator defaults, the step as before the tuning
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def cpu_tuning_enabled() -> bool:
    return os.environ.get(CPU_TUNING_SWITCH, "1") != "0"


def tune_allocator() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the kernel; True if done.

    Large blocks (over 128 KiB-32 MiB, glibc adapts) are mmap'ed and unmapped on free, and the top
    of the heap is trimmed: a training step that frees and re-allocates its buffers then takes
    thousands of page faults (measured: 5,000-10,000 per B = 16 step at 1 thread, ~500 after).
    Without mmap and trimming, freed blocks stay in the heap. The process keeps its peak memory
    until it exits; the arithmetic is untouched. Process-wide, so it is set once, at the start of a
    CPU run; elsewhere than glibc (macOS, musl, Windows) nothing is changed.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**30))


def tune_backends(device: torch.device) -> None:
    """GPU: let cuDNN pick the fastest convolution algorithms for the step's fixed shapes. CPU: keep
    freed memory in the process (tune_allocator), unless HTLIB_CPU_TUNING=0."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    elif cpu_tuning_enabled():
        tune_allocator()
