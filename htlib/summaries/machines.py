"""The machines: the training step's speed tables (results/bench_*.csv) and what the GPU job's log
says."""

from __future__ import annotations

import json
import re

import pandas as pd

from htlib.summaries.text import ProseError, count, hardware, listing, on, one, md_table, wrap
from htlib.tools.bench import BASES


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def gpu_section(log: str, log_path: str, notebooks: list[str], also_ran: list[str]) -> str:
    """What the GPU job's log says: when and where it ran, the notebooks' times, the benchmark.

    log_path: where the log lies (named in the text); notebooks: the numbers of the project's
    notebooks ("01", ...); also_ran: the other results that came from the same GPU, as phrases."""
    # the log's first line is `date` in the C locale ("Thu Nov 26 01:25:58 PM UTC 2026"), read without
    # the reader's locale
    month, day, year = _search(r"\A\w{3} (\w{3}) +(\d{1,2}) .* (\d{4})$", log, "the date", log_path, groups=3)
    if month not in MONTHS:
        raise ProseError(f"{log_path}: the date's month {month!r} is not one of {MONTHS}")
    date = f"{year}-{MONTHS.index(month) + 1:02d}-{int(day):02d}"
    gpu = hardware(_search(r"^GPU \d+: (.+?) \(UUID", log, "the GPU's name", log_path))
    torch_version = _search(r"^torch (\S+) cuda", log, "the torch version", log_path)
    ran = re.findall(r"^notebooks/(\d+)_\S+: ran in ([\d.]+) s with \{'profile': '(\w+)', 'device': '(\w+)'\}",
                     log, re.MULTILINE)
    bench = {row["variant"]: row for row in (json.loads(line) for line in log.splitlines()
                                             if line.startswith("{") and '"variant"' in line)}
    text = (f"One {gpu} was lent to this project on {date}; `benchmarks/gpu_job.sh` ran there "
            f"(log: `{log_path}`, torch {torch_version}).")
    if ran:
        numbers = [n for n, *_ in ran]
        consecutive = [int(n) for n in numbers] == list(range(int(numbers[0]), int(numbers[0]) + len(numbers)))
        names = f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 2 and consecutive else listing(numbers)
        profile, device = (one(pd.Series(column), what) for column, what in
                           zip(list(zip(*ran))[2:], ("profile", "device")))
        text += (f" Notebooks {names} ran at `{profile}` on {device.upper()} "
                 f"({', '.join(f'{seconds} s' for _, seconds, *_ in ran)}).")
    if {"batched", "per-episode loop"} <= set(bench):
        fast, slow = bench["batched"], bench["per-episode loop"]
        text += (f" `python -m htlib bench --device cuda` (same setting as below): batched "
                 f"**{fast['episodes_per_second']:.3g} episodes/s**, per-episode loop "
                 f"{slow['episodes_per_second']:.3g} episodes/s, **{fast['speedup']:.3g}x**; peak CUDA memory "
                 f"{fast['peak_memory_mib']:.0f} vs {slow['peak_memory_mib']:.0f} MiB.")
    if also_ran:
        text += f" {' and '.join(also_ran)[0].upper()}{' and '.join(also_ran)[1:]} ran there too."
    missing = [n for n in notebooks if n not in {n for n, *_ in ran}]
    if missing:
        text += (f" Notebook{'s' if len(missing) > 1 else ''} {listing(missing)} {'have' if len(missing) > 1 else 'has'} "
                 f"not been executed on a GPU yet.")
    return wrap(text)


def speed_section(tables: dict[str, pd.DataFrame]) -> str:
    """The training-step benchmark tables (results/bench_*.csv): one table per file and CPU model.
    Older files lack the CPU model, C, the median and the untuned setting: those cells stay empty."""
    parts = []
    # one table per machine: a file gathers the benches of every CPU the sessions ran on
    machines = [(name, cpu_table) for name, t in sorted(tables.items())
                for _, cpu_table in (t.groupby("cpu", sort=True) if "cpu" in t else [(None, t)])]
    for name, t in machines:
        ok = t[t["error"].isna()] if "error" in t else t
        device = one(ok.device, "device")
        where = on(device)
        if device == "cpu" and "cpu" in ok:
            where = f"{one(ok.cpu, 'CPU model')} ({one(ok.capability, 'CPU capability')})"
        days = sorted(pd.unique(t.date))
        parts.append(wrap(
            f"`results/{name}`: `python -m htlib bench` on {where}, {count(one(ok.threads, 'thread count'), 'thread')}, "
            f"torch {one(ok.torch, 'torch version')}, {' to '.join(dict.fromkeys([days[0], days[-1]]))}. The "
            f"reference task (20-way 1-shot, 60 queries, all layers generated) at the C of each row. Each row: "
            f"{one(ok.repeats, 'repeats')} blocks of timed steps in one process; episodes/s of the fastest block "
            f"(other work on the machine slows a block down, never up), then the median and slowest. \"% of "
            f"peak\" compares the achieved FLOP rate with a large matmul of the same dtype measured in the same "
            f"process. Settings: `old` is the step before the fast path, `loop` the same one episode at a time, "
            f"`untuned` the fast path without the CPU tuning (glibc's allocator defaults), `unfused` the fast "
            f"path without the fused kernels (multi-tensor AdamW, written-out attention), `new` the default "
            f"fast path (episodes sampled on the device, fused AdamW and attention, no per-step reads, the CPU "
            f"tuning), `2proc` the fast path split over two data-parallel processes with half the threads "
            f"each (the same gradient), `bf16` and `compile` add those switches (htlib.tools.bench). Memory: "
            f"{one(ok.memory_kind, 'memory kind')}, divided by B."))

        def base_rate(r, setting):
            same = ok[(ok.setting == setting) & (ok.episodes_per_step == r.episodes_per_step)]
            if "channels" in ok:
                same = same[same.channels == r.channels]
            return same.episodes_per_second.iloc[0] if len(same) else None

        def cell(value, fmt):
            return "" if value is None or pd.isna(value) else format(value, fmt)

        rows = []
        for _, r in t.iterrows():
            channels = cell(r.get("channels"), ".0f")
            if isinstance(r.get("error"), str):
                rows.append([str(r.episodes_per_step), channels, f"`{r.setting}`", "failed: " + r.error]
                            + [""] * (9 + len(BASES) - 2))
                continue
            speedups = [f"{r.episodes_per_second / rate:.2f}x" if rate else ""
                        for rate in (base_rate(r, base) for base in BASES)]
            rows.append([str(r.episodes_per_step), channels, f"`{r.setting}`", str(r.steps),
                         f"{r.episodes_per_second:,.0f}", cell(r.get("episodes_per_second_median"), ",.0f"),
                         cell(r.get("episodes_per_second_slowest"), ",.0f"), *speedups,
                         f"{r.gflop_per_episode:.3f}", f"{r.achieved_gflops:,.1f}", f"{100 * r.share_of_peak:.1f}%",
                         f"{r.memory_per_episode_mib:.2f}"])
        header = ["B", "C", "setting", "steps per block", "episodes/s", "median", "slowest",
                  *(f"vs {base}" for base in BASES), "GFLOP per episode", "GFLOP/s", "% of peak", "MiB per episode"]
        parts.append("\n".join(md_table(header, rows)))
    return "\n\n".join(parts)


def step_parts_section(tables: dict[str, pd.DataFrame]) -> str:
    """Where a step's time goes (results/step_parts_*.csv, `python -m htlib bench --parts`): one
    table per file and machine, each part's time and its share of the whole step."""
    parts = []
    for name, t in sorted(tables.items()):
        for (cpu, threads, channels, batch), m in t.groupby(["cpu", "threads", "channels", "episodes_per_step"],
                                                              sort=True):
            step = m[m.part == "step"]
            if len(step) != 1:
                raise ProseError(f"results/{name}: no single 'step' row for {cpu}, {threads} threads, C = {channels}, "
                                 f"B = {batch}; run `python -m htlib bench --parts` again")
            step_ms = float(step.ms.iloc[0])
            pieces = m[m.part != "step"]
            covered = pieces.ms.sum() / step_ms
            parts.append(wrap(
                f"`results/{name}`: `python -m htlib bench --parts` on {cpu} ({one(m.capability, 'CPU capability')}), "
                f"{count(threads, 'thread')}, torch {one(m.torch, 'torch version')}, {one(m.date, 'date')}: one training "
                f"step of the task above at C = {channels}, B = {batch}, "
                f"{'with' if one(m.fast_kernels, 'fast kernels') else 'without'} the fused kernels, and each of its "
                f"parts alone, forward and backward (htlib.tools.step_parts); the fastest of "
                f"{one(m.repeats, 'repeats')} calls, then the median. The parts add up to {100 * covered:.0f}% of "
                f"the step."))
            rows = [[f"{r.part}", f"{r.ms:.1f}", f"{r.ms_median:.1f}", f"{100 * r.ms / step_ms:.0f}%"]
                    for r in m.itertuples()]
            parts.append("\n".join(md_table(["part", "ms", "median ms", "share of the step"], rows)))
    return "\n\n".join(parts)


def _search(pattern: str, text: str, what: str, path: str, groups: int = 1):
    found = re.search(pattern, text, re.MULTILINE)
    if not found:
        raise ProseError(f"{path}: {what} not found (pattern {pattern!r})")
    return found.group(1) if groups == 1 else found.groups()
