"""Training speed: the real training step, setting by setting, with FLOPs and share of peak.

Each row times `Trainer.train_step` as the trainer runs it (episode sampling included) for one
batch size B and one setting:

- ``loop``: ``old`` with a Python loop over the B episodes instead of one batched call (what
  batching episodes buys);
- ``old``: the step as it was before the fast path: episodes sampled on the CPU and copied,
  per-parameter AdamW and clipping, the written-out attention, label checks and two value reads
  (`.item()`) every step;
- ``untuned``: ``new`` without the CPU tuning of htlib.speed (HTLIB_CPU_TUNING=0: glibc's
  allocator defaults), the step as it was before that tuning;
- ``unfused``: ``new`` without the fused kernels (HTLIB_FAST_KERNELS=0: multi-tensor AdamW and the
  written-out attention), the step as it was before them;
- ``new``: the default fast path: episodes sampled on the device, fused AdamW, fused attention,
  multi-tensor clipping, no value read until a log point, the CPU tuning;
- ``2proc``: ``new`` split over two data-parallel processes (htlib.distributed, gloo), each with
  half the threads and half of every step's episodes; DDP averages their gradients, which equals
  the gradient of the whole batch (tests/test_distributed.py);
- ``bf16``, ``compile``, ``compile+bf16``: ``new`` plus those switches (htlib.speed).

FLOPs of one episode are counted once, on the eager fp32 step, with torch.utils.flop_counter
(forward + backward, a multiply-add = 2 FLOPs), on a batch of ONE episode: the B per-episode CNNs
run as one grouped convolution, and torch's counter charges the backward of a grouped convolution
as if it were dense, so its count per episode would grow with B; with one episode there is one
group and the count is exact (tests/test_train.py checks that it does not depend on B). "peak" is the matmul throughput
measured in the same process with the same dtype, so that "share of peak" compares like with like.
Each row runs in its own process, so that its peak memory is its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import resource
import statistics
import time

import torch
import torch.nn.functional as F

import htlib.cpu as cpu
import htlib.speed as speed
from htlib.config import TrainConfig
from htlib.evaluate import episode_logits, per_episode_accuracy
from htlib.models.checks import trusted_episodes
from htlib.utils import resolve_device

SETTINGS = ("loop", "old", "untuned", "unfused", "new", "2proc", "bf16", "compile", "compile+bf16")
PROCESSES = {"2proc": 2}  # the data-parallel settings: processes, sharing the threads of one
UNTUNED = ("loop", "old", "untuned")  # the settings timed without htlib.speed's CPU tuning
UNFUSED = ("loop", "old", "unfused")  # the settings timed without htlib.speed's fused kernels
BASES = ("old", "untuned", "unfused")  # each row's speed-up is given over these, where they ran before it
# a row of the table is one measurement of this; a newer one replaces it (htlib.tools.bench.write_table)
TABLE_KEY = ["device", "cpu", "threads", "channels", "episodes_per_step", "setting"]


def _config(cfg: TrainConfig, setting: str, batch: int) -> TrainConfig:
    return dataclasses.replace(cfg, episodes_per_step=batch, episodes_on_device=setting not in ("old", "loop"),
                               precision="bf16" if "bf16" in setting else "fp32", compile="compile" in setting)


def _old_step(trainer, loop: bool = False) -> None:
    """The step before the fast path (kept here only to measure against); `loop`: one episode at a time."""
    episode = trainer.sampler.sample().to(trainer.device)
    trainer.optimizer.zero_grad(set_to_none=True)
    parts = [slice(b, b + 1) for b in range(episode.batch_size)] if loop else [slice(None)]
    for part in parts:
        logits = trainer.model(episode.support[part], episode.support_labels[part], episode.query[part], episode.ways)
        loss = F.cross_entropy(logits.flatten(0, 1), episode.query_labels[part].flatten()) / len(parts)
        if not torch.isfinite(loss):
            raise FloatingPointError("loss is not finite")
        loss.backward()
    torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.cfg.grad_clip, foreach=False)
    trainer.optimizer.step()
    trainer.scheduler.step()
    loss.item(), per_episode_accuracy(logits.detach(), episode.query_labels[parts[-1]]).mean().item()


def flops_per_episode(trainer) -> float:
    """Forward + backward FLOPs of one training episode, counted on the eager fp32 model with the
    written-out attention: the fused kernel's backward recomputes the scores, and a FLOP count that
    grew with the kernel would call a faster step a busier one."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = trainer.sampler.sample().to(trainer.device)
    episode = batch.select(slice(0, 1))
    counter = FlopCounterMode(display=False)
    with counter, trusted_episodes(), speed.without_fast_kernels():
        logits = episode_logits(trainer.model, episode)
        F.cross_entropy(logits.flatten(0, 1), episode.query_labels.flatten()).backward()
    trainer.model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """FLOP/s of a large square matmul in `dtype` on `device`: the practical peak for this run."""
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    _sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            a @ b
        count += 10
        _sync(device)
    return 2 * n**3 * count / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _measure(cfg: TrainConfig, setting: str, steps: int, repeats: int, peak_seconds: float, queue,
             rank: int = 0, port: int | None = None, threads: int | None = None) -> None:
    """Time one row in this (spawned) process and put it on `queue`; in a data-parallel setting each
    of its processes runs this, the ranks other than 0 put only an error."""
    from htlib.train import Trainer

    processes = PROCESSES.get(setting, 1)
    try:
        if setting in UNTUNED:  # this process is the row's own (spawned), so the switch is its alone
            os.environ[speed.CPU_TUNING_SWITCH] = "0"
        if setting in UNFUSED:
            os.environ[speed.FAST_KERNELS_SWITCH] = "0"
        if processes > 1:  # what torchrun would set: htlib.distributed joins the group from it
            os.environ.update(WORLD_SIZE=str(processes), RANK=str(rank), LOCAL_RANK=str(rank),
                              MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            torch.set_num_threads(max(1, threads // processes))
        trainer = Trainer(cfg, None)
        device = trainer.device
        flops = flops_per_episode(trainer)
        baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if setting in ("old", "loop"):  # the per-parameter AdamW of before
            trainer.optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=cfg.lr, foreach=False)
            trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda step: 1.0)
        step = (lambda: _old_step(trainer, setting == "loop")) if setting in ("old", "loop") else trainer.train_step
        compiled_at = time.perf_counter()
        with contextlib.nullcontext() if setting in ("old", "loop") else trusted_episodes():
            for _ in range(3 if cfg.compile else 2):  # warm-up (and compilation)
                step()
            _sync(device)
            warmup_seconds = time.perf_counter() - compiled_at
            blocks = []
            for _ in range(repeats):  # the fastest block: other work on the machine only ever slows one down
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                _sync(device)
                blocks.append(time.perf_counter() - start)
        seconds = min(blocks)
        rates = [steps * cfg.episodes_per_step / block for block in blocks]
        peak_memory = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                       else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kib) / 1024)
        dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
        peak = matmul_peak(device, dtype, peak_seconds)  # every process at once: the machine's peak is their sum
        peak = float(trainer.world.mean(torch.tensor([peak], dtype=torch.float64))) * processes
        peak_memory *= processes  # rank 0's growth stands for each process's
        if rank:
            return
        rate = steps * cfg.episodes_per_step / seconds
        queue.put({
            "setting": setting, "episodes_per_step": cfg.episodes_per_step, "steps": steps, "repeats": repeats,
            "slowest_block_ratio": round(max(blocks) / min(blocks), 2),
            "episodes_per_second": round(rate, 1), "seconds_per_step": seconds / steps,
            "episodes_per_second_median": round(statistics.median(rates), 1),
            "episodes_per_second_slowest": round(min(rates), 1),
            "warmup_seconds": round(warmup_seconds, 1),
            "gflop_per_episode": flops / 1e9, "achieved_gflops": rate * flops / 1e9,
            "matmul_peak_gflops": peak / 1e9, "share_of_peak": rate * flops / peak,
            "peak_memory_mib": round(peak_memory, 1),
            "memory_per_episode_mib": round(peak_memory / cfg.episodes_per_step, 3),
            "memory_kind": "CUDA max allocated" if device.type == "cuda" else "CPU RSS growth over setup",
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "cpu": cpu.cpu_model(), "capability": cpu.capability(), "channels": cfg.channels,
            "cpu_tuning": device.type == "cpu" and speed.cpu_tuning_enabled(),
            "fast_kernels": speed.fast_kernels_enabled(),
            "threads": torch.get_num_threads() * processes, "processes": processes, "torch": torch.__version__,
        })
    except Exception as exc:  # one failing setting (e.g. out of memory) must not lose the others
        queue.put({"setting": setting, "episodes_per_step": cfg.episodes_per_step,
                   "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]})


def benchmark(cfg: TrainConfig, steps: int = 10, batches: tuple[int, ...] = (16,),
              settings: tuple[str, ...] = ("old", "new"), report=None, peak_seconds: float = 1.0,
              repeats: int = 3) -> list[dict]:
    """One row per (B, setting): episodes/s (the fastest of `repeats` blocks of `steps` steps), GFLOP/s,
    share of the matmul peak, peak memory. `report(row)` is called as each row is measured (default:
    print a line), so that a bench stopped by a time limit keeps the rows it finished.

    At each B the rows run in SETTINGS order, and each row gets its speed-up over each of BASES
    that ran before it."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        from htlib.errors import ConfigError
        raise ConfigError(f"Unknown bench settings {unknown}; choose from {SETTINGS}.")
    resolve_device(cfg.device)
    base = cfg.resolved()
    ctx = mp.get_context("spawn")
    rows = []
    for batch in batches:
        base_rates: dict[str, float] = {}
        for setting in sorted(settings, key=SETTINGS.index):
            run_cfg = _config(base, setting, batch).resolved()
            queue = ctx.Queue()
            port, threads = _free_port(), torch.get_num_threads()
            procs = [ctx.Process(target=_measure, args=(run_cfg, setting, steps, repeats, peak_seconds, queue, rank,
                                                        port, threads))
                     for rank in range(PROCESSES.get(setting, 1))]
            for proc in procs:
                proc.start()
            row = queue.get()  # rank 0's row, or the first error of any rank
            for proc in procs:  # a rank left waiting for a failed one is stopped
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.terminate()
            if "error" not in row:
                for base_setting in BASES:  # only the bases timed before this row
                    base_rate = base_rates.get(base_setting)
                    row[f"speedup_over_{base_setting}"] = (round(row["episodes_per_second"] / base_rate, 2)
                                                           if base_rate else None)
                if setting in BASES:
                    base_rates[setting] = row["episodes_per_second"]
            rows.append(row)
            (report or (lambda r: print(line(r), flush=True)))(row)
    return rows


def line(row: dict) -> str:
    """One row as a line of text."""
    if "error" in row:
        return f"B={row['episodes_per_step']:<5} {row['setting']:<13} failed: {row['error']}"
    speedup = "".join(f" ({row[f'speedup_over_{base}']:.2f}x {base})" for base in BASES
                      if row.get(f"speedup_over_{base}"))
    return (f"B={row['episodes_per_step']:<5} {row['setting']:<13} {row['episodes_per_second']:>10.1f} episodes/s "
            f"(median {row['episodes_per_second_median']:.1f}, slowest {row['episodes_per_second_slowest']:.1f})"
            f"{speedup}, {row['achieved_gflops']:.1f} GFLOP/s = {100 * row['share_of_peak']:.1f}% of "
            f"{row['matmul_peak_gflops']:.0f}, {row['peak_memory_mib']:.0f} MiB")


def write_table(rows: list[dict], path, key: list[str] = TABLE_KEY, order: tuple[str, ...] = SETTINGS):
    """Add the rows, dated, to the CSV at `path` for the README's table (htlib.tools.readme); a row
    with the same `key` (device, CPU, threads, C, B, setting) replaces the older one, so that
    benches can be run in parts. Rows are sorted by the key, its last column in `order`'s order
    (the settings; the step parts are kept in the order they were measured when `order` is empty)."""
    from datetime import date
    from pathlib import Path

    import pandas as pd

    from htlib.utils import write_atomic

    table = pd.DataFrame(rows).assign(date=date.today().isoformat())
    if Path(path).is_file():
        old = pd.read_csv(path)
        table = pd.concat([old, table]).drop_duplicates(subset=key, keep="last")
    if order:
        rank = {name: i for i, name in enumerate(order)}
        table = table.sort_values(key, key=lambda col: col.map(rank) if col.name == key[-1] else col)
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))
    return Path(path)
