"""README.md's result sections are rendered from results/ (htlib.tools.readme): the committed README
must agree with the committed files, and the rendering must follow the numbers it is given."""

from __future__ import annotations

import pandas as pd
import pytest

from htlib.data.paths import PROJECT_ROOT
from htlib.summaries import (ProseError, fidelity_section, gpu_section, recipe_section, single_runs_section,
                             speed_section, step_parts_section, sweep_section)
from htlib.tools.readme import ReadmeError, diff, fill, load, markers, render, update

README = PROJECT_ROOT / "README.md"


def test_the_readme_agrees_with_the_result_files():
    text = README.read_text(encoding="utf-8")
    expected = fill(text, render(load()))
    assert text == expected, f"README.md disagrees with results/: run `make readme`\n{diff(text, expected)}"


def _flat(text: str) -> str:
    """The rendered Markdown with its line wrapping undone, to search for whole phrases."""
    return " ".join(text.split())


def _run(method: str, accuracy: float) -> dict:
    return {"method": method, "dataset": "omniglot", "ways": 20, "shots": 1, "channels": 8, "seed": 0,
            "profile": "quick", "steps": 100, "episodes_seen": 1600, "test_accuracy": accuracy, "ci95": 0.005,
            "test_episodes": 600, "wall_seconds": 12.0, "device": "cpu"}


def test_single_runs_follow_the_accuracies():
    runs = {"ht-all": _run("ht-all", 0.80), "ht-logits": _run("ht-logits", 0.70)}
    before = _flat(single_runs_section(runs, paper_test_tasks=1024))
    assert "**80.00% ± 0.50%**" in before and "beats generating the logits layer only (+10.0 ± 0.7 points)" in before
    runs["ht-all"] = _run("ht-all", 0.65)
    after = _flat(single_runs_section(runs, paper_test_tasks=1024))
    assert "65.00% ± 0.50%" in after and "**70.00% ± 0.50%**" in after
    assert "trails generating the logits layer only (−5.0 ± 0.7 points)" in after
    assert "do not all point the paper's way" in after


def _sweep(accuracies: dict[tuple[str, int], float], profile: str = "long") -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "dataset": "omniglot", "ways": 20, "shots": 1, "channels": c, "seed": 0,
                          "profile": profile, "steps": 10, "episodes_seen": 160, "test_accuracy": a, "ci95": 0.01,
                          "test_episodes": 600, "wall_seconds": 5.0, "device": "cpu"}
                         for (m, c), a in accuracies.items()])


def test_the_sweep_section_follows_the_table():
    accuracies = {("ht-all", 4): 0.60, ("protonet", 4): 0.50, ("ht-all", 8): 0.70, ("protonet", 8): 0.75}
    before = _flat(sweep_section({"long": _sweep(accuracies)}))
    assert "| 1 | `long` ht-all | **60.0 ± 1.0** | 70.0 ± 1.0 |" in before
    assert "the whole 4-cell sweep in 20 s" in before
    assert "ahead at C = 4 (+10.0) and behind at C = 8" in before
    accuracies[("ht-all", 4)] = 0.40
    after = _flat(sweep_section({"long": _sweep(accuracies)}))
    assert "| 1 | `long` ht-all | 40.0 ± 1.0 | 70.0 ± 1.0 |" in after
    assert "| 1 | `long` protonet | **50.0 ± 1.0** |" in after
    assert "behind at every C" in after and "the paper's claim is **not** reproduced" in after


def test_the_speed_section_follows_the_bench_table():
    def row(setting, rate, **extra):
        return {"setting": setting, "episodes_per_step": 16, "steps": 10, "repeats": 3, "episodes_per_second": rate,
                "gflop_per_episode": 0.36, "achieved_gflops": rate * 0.36, "matmul_peak_gflops": 300.0,
                "share_of_peak": rate * 0.36 / 300, "memory_per_episode_mib": 2.0, "memory_kind": "CUDA max allocated",
                "device": "NVIDIA H100 80GB HBM3", "threads": 16, "torch": "2.9", "date": "2026-12-01", **extra}
    table = pd.DataFrame([row("old", 500.0), row("new", 2000.0),
                          {**row("compile", 0.0), "error": "OutOfMemoryError: CUDA out of memory"}])
    table.loc[:1, "error"] = None
    text = _flat(speed_section({"bench_gpu.csv": table}))
    assert "`python -m htlib bench` on one H100, 16 threads" in text
    # a file from before the C, median and untuned columns: those cells stay empty
    assert "| 16 | | `new` | 10 | 2,000 | | | 4.00x | | | 0.360 | 720.0 | 240.0% |" in text
    assert "| 16 | | `compile` | failed: OutOfMemoryError: CUDA out of memory |" in text

    def cpu_row(setting, rate, channels):
        return {**row(setting, rate), "device": "cpu", "memory_kind": "CPU RSS growth over setup", "threads": 2,
                "cpu": "Some CPU", "capability": "AVX2", "channels": channels, "episodes_per_second_median": rate - 5,
                "episodes_per_second_slowest": rate - 10}
    cpu = pd.DataFrame([cpu_row("untuned", 100.0, 8), cpu_row("unfused", 88.0, 8), cpu_row("new", 110.0, 8),
                        cpu_row("untuned", 50.0, 32), cpu_row("new", 60.0, 32)]).assign(
        date=["2026-12-04"] * 4 + ["2026-12-05"])
    text = _flat(speed_section({"bench_cpu.csv": cpu}))
    assert "on Some CPU (AVX2), 2 threads, torch 2.9, 2026-12-04 to 2026-12-05" in text
    assert "| 16 | 8 | `new` | 10 | 110 | 105 | 100 | | 1.10x | 1.25x |" in text  # each C against its own bases
    assert "| 16 | 32 | `new` | 10 | 60 | 55 | 50 | | 1.20x | |" in text
    other = cpu.assign(cpu="Other CPU", episodes_per_second=[200.0, 150.0, 300.0, 100.0, 100.0])
    text = _flat(speed_section({"bench_cpu.csv": pd.concat([cpu, other])}))  # one table per machine
    assert text.count("`results/bench_cpu.csv`: `python -m htlib bench` on") == 2
    assert "on Other CPU (AVX2)" in text and "| 16 | 8 | `new` | 10 | 300 | 105 | 100 | | 1.50x | 2.00x |" in text
    assert "| 16 | 8 | `new` | 10 | 110 | 105 | 100 | | 1.10x | 1.25x |" in text


def test_the_step_parts_table_gives_each_part_its_share_of_the_step():
    def row(part, ms, channels=8):
        return {"part": part, "ms": ms, "ms_median": ms + 1, "device": "cpu", "cpu": "Some CPU", "capability": "AVX2",
                "threads": 1, "torch": "2.9", "channels": channels, "episodes_per_step": 16, "fast_kernels": True,
                "repeats": 8, "date": "2026-12-06"}
    table = pd.DataFrame([row("step", 200.0), row("queries through the generated CNN", 50.0),
                          row("transformer conv0", 30.0), row("step", 400.0, 32), row("transformer conv0", 100.0, 32)])
    text = _flat(step_parts_section({"step_parts_cpu.csv": table}))
    assert text.count("`python -m htlib bench --parts` on Some CPU (AVX2), 1 thread,") == 2  # one table per C
    assert "C = 8, B = 16, with the fused kernels" in text and "The parts add up to 40% of the step." in text
    assert "| queries through the generated CNN | 50.0 | 51.0 | 25% |" in text
    assert "| transformer conv0 | 100.0 | 101.0 | 25% |" in text and "add up to 25% of the step" in text
    with pytest.raises(ProseError, match="no single 'step' row"):
        step_parts_section({"step_parts_cpu.csv": table[table.part != "step"]})


def test_the_recipe_section_follows_the_table():
    def row(arm, seed, acc, episodes=48000):
        return {"arm": arm, "change": f"{arm} change", "seed": seed, "episodes": episodes, "test_accuracy": acc,
                "ci95": 0.005, "device": "cpu"}

    table = pd.DataFrame([row("baseline", 0, 0.80), row("baseline", 1, 0.82), row("lr-3e-3", 0, 0.70, 48000),
                          row("embed-64", 0, 0.81), row("embed-64", 1, 0.83)])
    text = _flat(recipe_section({"long": table}, "omniglot"))
    assert "`results/recipe_long_omniglot.csv`: 2 arms against the baseline at the `long` budget, 48,000" in text
    assert "scores 80.0%, 82.0% (seeds 0, 1)" in text and "two seeds alone differ by 2.0 points" in text
    # best first; a one-seed arm against the baseline's same seed
    assert text.index("`embed-64`") < text.index("`lr-3e-3`")
    assert "| `embed-64` | embed-64 change | 2 | 48,000 | 82.0 | +1.0 ± 0.5 | better |" in text
    assert "| `lr-3e-3` | lr-3e-3 change | 1 | 48,000 | 70.0 | −10.0 ± 0.7 | worse |" in text
    with pytest.raises(ReadmeError, match="no baseline row"):
        recipe_section({"long": table[table.arm != "baseline"]}, "omniglot")


def test_the_fidelity_section_follows_the_tables():
    def row(arm, seed, acc):
        return {"arm": arm, "change": f"{arm} change", "seed": seed, "episodes": 48000, "test_accuracy": acc,
                "ci95": 0.005, "device": "cpu"}

    vinyals = pd.DataFrame([row("baseline", 0, 0.80), row("baseline", 1, 0.82), row("glorot-init", 0, 0.75)])
    paper = pd.DataFrame([row("baseline", 0, 0.86), row("reference-model", 0, 0.87)])
    text = _flat(fidelity_section({"vinyals": vinyals, "paper": paper}, "quick", "omniglot"))
    # the protocol's share on the seed both baselines have (seed 0): 86.0 against 80.0
    assert "score 86.0% on the `paper` protocol against 80.0% on `vinyals` (1 seed): +6.0 ± 0.7 points (better)" in text
    assert "The paper reports 96.2%" in text
    assert "`glorot-init` −5.0 ± 0.7 (worse, 1 seed)" in text and "`reference-model` +1.0 ± 0.7 (better, 1 seed)" in text
    assert "| `baseline` | today's defaults (the recipe study's baseline) | 81.0 (2) | – | 86.0 (1) | – |" in text
    assert "| `glorot-init` |" in text and "| 75.0 (1) | −5.0 ± 0.7 | – | – |" in text
    assert "No fidelity run committed yet" in fidelity_section({}, "quick", "omniglot")


def _sections(name: str = "x") -> dict[str, str]:
    return {name: "new body"}


def test_markers_are_filled_once_and_bad_markers_are_refused():
    start, end = markers("x")
    text = f"intro\n{start}\nold body\n{end}\noutro\n"
    assert fill(text, _sections()) == f"intro\n{start}\n\nnew body\n\n{end}\noutro\n"
    for bad, why in [("intro\n", "0 times"), (text + start + "\n", "2 times"), (text + end + "\n", "2 times"),
                     (f"{end}\n{start}\n", "comes before")]:
        with pytest.raises(ReadmeError, match=why) as error:
            fill(bad, _sections())
        assert "results:x" in str(error.value)


def test_check_reports_a_stale_readme_and_the_command_rewrites_it(tmp_path, capsys):
    stale = tmp_path / "README.md"
    stale.write_text(README.read_text(encoding="utf-8").replace("| 600 |", "| 599 |"), encoding="utf-8")
    assert update(stale, check=True) == 1
    out = capsys.readouterr().out
    assert "run `make readme`" in out and "| 599 |" in out
    assert update(stale) == 0
    assert stale.read_text(encoding="utf-8") == README.read_text(encoding="utf-8")


def test_the_gpu_section_reads_the_log_without_the_locale_and_states_no_history_of_its_own():
    log = ("Thu Nov 26 01:25:58 PM UTC 2026\nGPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-x)\ntorch 2.11.0+cu130 cuda\n"
           "notebooks/01_episodes.ipynb: ran in 7.4 s with {'profile': 'ci', 'device': 'cuda'}\n")
    text = _flat(gpu_section(log, "results/gpu/job.log", ["01", "02"], ["the `long` sweep above"]))
    assert "One H100 was lent to this project on 2026-11-26" in text and "(log: `results/gpu/job.log`" in text
    assert "The `long` sweep above ran there too." in text
    assert "Notebook 02 has not been executed on a GPU yet." in text
    assert "ran there too" not in _flat(gpu_section(log, "job.log", ["01"], []))
    with pytest.raises(ReadmeError, match="job.log: the date's month 'Okt' is not one of"):  # a German `date`
        gpu_section(log.replace("Nov", "Okt"), "job.log", ["01"], [])


def test_the_grading_section_follows_the_timed_class():
    from htlib.summaries import grading_section

    def row(student, notebook, seconds, kind, points):
        return {"student": student, "notebook": notebook, "seconds": seconds, "notebook_status": "ran", "kind": kind,
                "points": points, "max_points": 20.0, "students": 3, "timeout": 300.0, "wall_seconds": 600.0,
                "cpu": "Some CPU", "capability": "AVX2", "threads": 2, "torch": "2.13", "date": "2026-12-06"}

    table = pd.DataFrame([row("s1", "01", 40.0, "complete", 20.0), row("s1", "02", 20.0, "complete", 20.0),
                          row("s2", "01", 30.0, "complete", 20.0), row("s3", "01", 320.0, "endless-loop", 18.0)])
    text = _flat(grading_section({"grading_class_cpu.csv": table}))
    assert "on Some CPU, 2 threads, 2026-12-06: a made-up class of 3 students" in text
    assert "limit of 300 s per cell, took 10 minutes in all (200 s per student on average" in text
    # per student: the sum of its notebooks (s1: 60 s, s2: 30 s), then the median over the kind's students
    assert "| `complete` | 2 | 45 | 60 | 20 of 20 |" in text and "| `endless-loop` | 1 | 320 | 320 | 18 of 20 |" in text
    assert "No class timed yet" in grading_section({})
