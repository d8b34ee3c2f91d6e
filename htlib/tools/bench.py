"""Training speed: the batched episode step against a Python loop over episodes.

Both variants train the same model on the same episodes (the reference Omniglot setting by
default: 20-way 1-shot, 60 queries, C=8) and do the same arithmetic; only the batching
differs. Each variant runs in its own process so that its peak memory is its own.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time

import torch
import torch.nn.functional as F

from htlib.config import TrainConfig
from htlib.data import EpisodeSampler, load_split
from htlib.evaluate import episode_logits
from htlib.methods import build_model
from htlib.utils import resolve_device, seed_everything


def _step(model, optimizer, episode, per_episode: bool) -> None:
    optimizer.zero_grad(set_to_none=True)
    if per_episode:
        for b in range(episode.batch_size):
            logits = model(episode.support[b:b + 1], episode.support_labels[b:b + 1],
                           episode.query[b:b + 1], episode.ways)
            loss = F.cross_entropy(logits.flatten(0, 1), episode.query_labels[b]) / episode.batch_size
            loss.backward()
    else:
        logits = episode_logits(model, episode)
        F.cross_entropy(logits.flatten(0, 1), episode.query_labels.flatten()).backward()
    optimizer.step()


def _measure(variant: str, cfg: TrainConfig, steps: int, queue) -> None:
    torch.set_num_threads(torch.get_num_threads())
    seed_everything(0)
    device = resolve_device(cfg.device)
    data = load_split(cfg.dataset, "train", cfg.data_dir, split_scheme=cfg.split_scheme)
    sampler = EpisodeSampler(data, cfg.ways, cfg.shots, cfg.queries, batch_size=cfg.episodes_per_step, seed=0)
    model = build_model(cfg, data.image_shape).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    episodes = [sampler.sample().to(device) for _ in range(steps + 2)]
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    per_episode = variant == "per-episode loop"
    for ep in episodes[:2]:  # warm-up
        _step(model, optimizer, ep, per_episode)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for ep in episodes[2:]:
        _step(model, optimizer, ep, per_episode)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kib) / 1024)
    queue.put({"variant": variant, "episodes_per_step": cfg.episodes_per_step, "steps": steps,
               "episodes_per_second": steps * cfg.episodes_per_step / seconds,
               "seconds_per_step": seconds / steps,
               "peak_memory_mib": round(peak, 1),
               "memory_kind": "CUDA max allocated" if device.type == "cuda" else "CPU RSS growth over setup",
               "device": str(device), "threads": torch.get_num_threads()})


def benchmark(cfg: TrainConfig, steps: int = 10) -> list[dict]:
    """Episodes per second and peak memory for the batched step and the per-episode loop."""
    cfg = cfg.resolved()
    ctx = mp.get_context("spawn")
    rows = []
    for variant in ("batched", "per-episode loop"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(variant, cfg, steps, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
    rows[0]["speedup"] = rows[0]["episodes_per_second"] / rows[1]["episodes_per_second"]
    return rows
