"""The shared training loop: results, exact resume, guards, evaluation and the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from htlib.cli import main
from htlib.errors import ConfigError
from htlib.evaluate import mean_ci95
from htlib.train import TrainConfig, Trainer, load_trained, train


def tiny(**overrides) -> TrainConfig:
    base = dict(dataset="synthetic", ways=5, shots=1, queries=2, channels=4, profile="ci", steps=6,
                episodes_per_step=2, val_every=3, val_episodes=4, test_episodes=8,
                model_options={"transformer_layers": 1, "label_dim": 8, "shared_features": 8,
                               "local_features": 4})
    base.update(overrides)
    return TrainConfig(**base)


pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.numeric]  # numeric: see pyproject.toml


def test_train_writes_results(tmp_path):
    out = train(tiny(), tmp_path, progress=False)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == out.result
    assert result["steps"] == 6 and result["episodes_seen"] == 12 and result["test_episodes"] == 8
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["ci95"] >= 0
    assert result["method"] == "ht-all" and result["dataset"] == "synthetic"
    assert result["trainable_params"] > 0 and result["generated_params"] > 0
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["step"])[-1] == 6 and metrics["val_accuracy"].notna().sum() == 2
    assert (metrics["lr"] > 0).all() and metrics["loss"].notna().all()


def test_resume_continues_to_the_same_result(tmp_path):
    straight = train(tiny(), tmp_path / "a", progress=False)
    interrupted = Trainer(tiny(), tmp_path / "b")
    interrupted.fit(progress=False, stop_at=4)  # e.g. the session ended after step 4
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 4
    resumed = train(tiny(), tmp_path / "b", resume=True, progress=False)
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)
    assert resumed.result["test_accuracy"] == straight.result["test_accuracy"]
    assert resumed.metrics["loss"].tolist() == pytest.approx(straight.metrics["loss"].tolist())


def test_a_checkpoint_written_before_methods_had_names_resumes_exactly(tmp_path):
    """The campaign's checkpoint (and every run folder before) stored method "ht" and generate "all"."""
    from htlib import checkpoints

    straight = train(tiny(), tmp_path / "a", progress=False)
    Trainer(tiny(), tmp_path / "b").fit(progress=False, stop_at=4)
    path = tmp_path / "b" / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    state["config"] = {**{k: v for k, v in state["config"].items() if k != "method"}, "method": "ht", "generate": "all"}
    checkpoints.save(state, path)
    resumed = train(tiny(), tmp_path / "b", resume=True, progress=False)
    assert resumed.metrics["loss"].tolist() == pytest.approx(straight.metrics["loss"].tolist())
    assert resumed.result["method"] == "ht-all"


def test_resume_refuses_other_config_and_overwrite(tmp_path):
    train(tiny(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="different configuration.*channels"):
        train(tiny(channels=6), tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny(), tmp_path, resume=False, progress=False)


def test_a_trained_run_without_its_checkpoint_is_never_trained_over_unless_asked(tmp_path, capsys):
    """A committed run keeps model.pt, result.json, metrics.csv and config.json but not its checkpoint."""
    from htlib.cli import main

    first = train(tiny(steps=6), tmp_path, progress=False)
    (tmp_path / "checkpoint.pt").unlink()
    before = {name: (tmp_path / name).read_bytes() for name in ("model.pt", "result.json", "metrics.csv")}
    with pytest.raises(FileExistsError, match=r"holds a trained run \(result.json, model.pt\) without the "
                                              r"checkpoint.*--overwrite"):
        train(tiny(steps=2), tmp_path, progress=False)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # untouched
    argv = ["train", "--dataset", "synthetic", "--profile", "ci", "--steps", "2", "--ways", "5", "--channels", "4",
            "--transformer-layers", "1", "--device", "cpu", "--no-progress", "--run-dir", str(tmp_path)]
    assert main(argv) == 2 and "without the checkpoint to resume it" in capsys.readouterr().err
    replaced = train(tiny(steps=2), tmp_path, progress=False, overwrite=True)
    assert replaced.result["steps"] == 2 != first.result["steps"]
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == len(replaced.metrics)  # no rows of the old run left
    assert main([*argv[:-2], "--run-dir", str(tmp_path / "new"), "--overwrite"]) == 0  # nothing to replace: trains


def test_nan_guard_rolls_back_to_the_last_checkpoint_with_advice(tmp_path, monkeypatch):
    trainer = Trainer(tiny(steps=9), tmp_path)
    trainer.fit(progress=False, stop_at=3)  # a good checkpoint at step 3
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    forward = trainer.model.forward
    # from now on every loss is nan; the guard sees it at the next log point (step 4 here)
    monkeypatch.setattr(trainer.model, "forward", lambda *args: forward(*args) * float("nan"))
    with pytest.raises(FloatingPointError, match=r"nan at step 4\. Lower the learning rate.*rolled back.*step 3"):
        trainer.fit(progress=False)
    assert trainer.step == 3
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, good[key]), key
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3


def test_nan_guard_without_a_run_folder_says_nothing_was_kept(monkeypatch):
    trainer = Trainer(tiny(), None)
    forward = trainer.model.forward
    monkeypatch.setattr(trainer.model, "forward", lambda *args: forward(*args) * float("nan"))
    with pytest.raises(FloatingPointError, match="at step 1\\..*not kept"):
        trainer.fit(progress=False)


def test_mean_ci95():
    mean, ci = mean_ci95(torch.tensor([0.0, 1.0] * 50))
    assert mean == pytest.approx(0.5)
    assert ci == pytest.approx(1.96 * 0.5025 / 10, rel=1e-3)  # sample std of 50/50 zeros and ones


def test_eval_cli_prints_one_json_object(tmp_path, capsys):
    train(tiny(), tmp_path, progress=False)
    model, cfg = load_trained(tmp_path / "checkpoint.pt", device="cpu")
    assert cfg.channels == 4 and sum(p.numel() for p in model.parameters()) > 0
    code = main(["eval", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--episodes", "10",
                 "--batch-size", "4", "--device", "cpu", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["episodes"] == 10 and out["ways"] == 5 and out["shots"] == 1
    assert 0 <= out["accuracy"] <= 1 and out["ci95"] > 0


def test_eval_cli_bad_checkpoint(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--json"]) == 2
    assert "train one" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    assert main(["eval", "--checkpoint", str(tmp_path / "junk.pt"), "--json"]) == 2
    assert "not an htlib training checkpoint" in capsys.readouterr().err


def test_load_or_train_reuses_a_finished_run(tmp_path, capsys):
    from htlib.train import load_or_train

    first = load_or_train(tiny(), tmp_path, progress=False)
    assert "Training into" in capsys.readouterr().out
    again = load_or_train(tiny(), tmp_path, progress=False)
    assert "Loaded the finished run" in capsys.readouterr().out
    assert again.result == first.result
    for key, value in first.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value)
    other = load_or_train(tiny(steps=3), tmp_path / "other", progress=False)
    assert other.result["steps"] == 3


def test_benchmark_times_each_setting_with_flops_share_of_peak_and_memory(tmp_path):
    """`python -m htlib bench` end to end (no timing assertion: speed depends on the machine)."""
    from htlib.tools.bench import benchmark, write_table

    rows = benchmark(tiny(), steps=1, batches=(2,), settings=("new", "unfused", "untuned", "old", "loop"),
                     report=lambda _: None, peak_seconds=0.05, repeats=3)
    assert [r["setting"] for r in rows] == ["loop", "old", "untuned", "unfused", "new"]  # SETTINGS order
    for row in rows:
        assert "error" not in row, row
        assert row["episodes_per_second"] > 0 and row["gflop_per_episode"] > 0 and row["peak_memory_mib"] >= 0
        assert row["episodes_per_second"] >= row["episodes_per_second_median"] >= row["episodes_per_second_slowest"] > 0
        assert 0 < row["share_of_peak"] < 2 and row["achieved_gflops"] == pytest.approx(
            row["share_of_peak"] * row["matmul_peak_gflops"])
        assert row["cpu"] and row["capability"] and row["channels"] == tiny().channels
        assert row["cpu_tuning"] == (row["setting"] in ("unfused", "new"))  # the untuned rows really ran without it
        assert row["fast_kernels"] == (row["setting"] in ("untuned", "new"))  # and the unfused ones without these
    assert rows[0]["speedup_over_old"] is None and rows[2]["speedup_over_old"] > 0
    assert rows[2]["speedup_over_untuned"] is None and rows[4]["speedup_over_untuned"] == pytest.approx(
        rows[4]["episodes_per_second"] / rows[2]["episodes_per_second"], abs=0.01)
    assert rows[3]["speedup_over_unfused"] is None and rows[4]["speedup_over_unfused"] == pytest.approx(
        rows[4]["episodes_per_second"] / rows[3]["episodes_per_second"], abs=0.01)
    assert rows[0]["gflop_per_episode"] == pytest.approx(rows[2]["gflop_per_episode"])  # the same model
    from htlib.tools.bench import flops_per_episode
    assert flops_per_episode(Trainer(tiny(episodes_per_step=1), None)) == flops_per_episode(
        Trainer(tiny(episodes_per_step=6), None))  # not the counter's dense charge for grouped convolutions
    write_table(rows[1:], tmp_path / "bench.csv")
    rows[1]["episodes_per_second"] = -1.0  # a newer measurement of the same row replaces the older one
    table = pd.read_csv(write_table(rows[:2], tmp_path / "bench.csv"))
    assert list(table["setting"]) == ["loop", "old", "untuned", "unfused", "new"] and table["date"].notna().all()
    assert table["episodes_per_second"].tolist()[1] == -1.0 and (table["repeats"] == 3).all()


def test_step_parts_time_every_part_of_a_hypertransformer_step(tmp_path):
    """`bench --parts` end to end: the whole step, then each part once (no timing assertion)."""
    from htlib.schemas import read_table
    from htlib.tools import step_parts
    from htlib.tools.bench import write_table

    rows = step_parts.step_parts(tiny(), repeats=2)
    names = [r["part"] for r in rows]
    assert names == ["step", "shared features"] + [
        f"{kind} {layer}" for layer in ("conv0", "conv1", "conv2", "conv3", "logits")
        for kind in ("local features", "transformer")] + [
        "support through the generated CNN", "queries through the generated CNN", "gradient clipping and optimizer"]
    assert all(r["ms_median"] >= r["ms"] > 0 for r in rows) and {r["channels"] for r in rows} == {tiny().channels}
    stepped = []  # the optimizer part steps every parameter that has a gradient in a training step
    trainer_step = torch.optim.AdamW.step
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: stepped.append(
            sum(p.grad is not None for g in self.param_groups for p in g["params"])) or trainer_step(self, *a, **k))
        step_parts.step_parts(tiny(), repeats=1)
    assert stepped and stepped[-1] == stepped[0] > 0
    path = write_table(rows, tmp_path / "step_parts_cpu.csv", key=step_parts.TABLE_KEY, order=())
    assert list(read_table(path, "step_parts")["part"]) == names  # kept in the order measured
    with pytest.raises(ConfigError, match="not one"):
        step_parts.step_parts(tiny(method="protonet", model_options={}), repeats=1)


def test_benchmark_splits_the_step_over_two_data_parallel_processes_and_reports_a_failed_rank():
    """The `2proc` row: two gloo processes of half the threads each, the machine's peak summed over
    both; a B the two cannot split is a failed row, not a hung bench."""
    from htlib.tools.bench import benchmark

    threads = torch.get_num_threads()
    row, = benchmark(tiny(), steps=1, batches=(2,), settings=("2proc",), report=lambda _: None, peak_seconds=0.05,
                     repeats=2)
    assert "error" not in row, row
    assert row["processes"] == 2 and row["threads"] == 2 * max(1, threads // 2)
    assert row["episodes_per_second"] > 0 and row["matmul_peak_gflops"] > 0 and row["peak_memory_mib"] >= 0
    failed, = benchmark(tiny(), steps=1, batches=(3,), settings=("2proc",), report=lambda _: None, peak_seconds=0.05)
    assert "cannot be split evenly over 2 processes" in failed["error"]


@pytest.mark.parametrize("method,options", [("protonet", {}), ("maml", {"inner_steps": 2})])
def test_baselines_train_and_evaluate_through_the_same_loop(tmp_path, method, options):
    out = train(tiny(method=method, model_options=options), tmp_path, progress=False)
    assert out.result["method"] == method  # options refine a method without renaming it (its folder says them)
    assert out.result["generated_params"] == 0
    assert 0.0 <= out.result["test_accuracy"] <= 1.0 and out.result["test_episodes"] == 8
    model, cfg = load_trained(tmp_path / "checkpoint.pt", device="cpu")
    assert cfg.method == method and type(model).__name__ == type(out.model).__name__


# ---------------------------------------------------------------- recipe knobs (htlib.experiments.recipe)


def _factors(**settings) -> list[float]:
    from htlib.optim import lr_factor

    cfg = tiny(steps=100, warmup_steps=10, **settings).resolved()
    return [lr_factor(cfg)(step) for step in (0, 4, 9, 10, 50, 99, 100)]


def test_schedules_give_the_lr_they_should():
    ramp = [0.1, 0.5, 1.0]  # (step + 1) / 10 over the warm-up
    assert _factors(schedule="constant") == pytest.approx(ramp + [1.0] * 4)
    # the reference: lr x 0.95^(step / decay_steps), its 40 decay periods spread over these 100 steps
    decay = [0.95 ** (40 * step / 100) for step in (0, 4, 9, 10, 50, 99, 100)]
    assert _factors(schedule="reference") == pytest.approx([r * d for r, d in zip(ramp, decay)] + decay[3:])
    assert _factors(schedule="reference")[-1] == pytest.approx(0.1285, abs=1e-4)  # 0.95 ** 40
    cosine = _factors()  # the default, unchanged: warm-up, 1 at its end, 5% at the last step
    assert cosine[:4] == pytest.approx(ramp + [1.0]) and cosine[-2:] == pytest.approx([0.05, 0.05], abs=1e-3)
    no_warmup = tiny(steps=100, warmup_steps=0, schedule="reference").resolved()
    from htlib.optim import lr_factor

    assert lr_factor(no_warmup)(0) == 1.0


def test_sgd_is_plain_sgd_and_follows_its_schedule(tmp_path):
    trainer = Trainer(tiny(optimizer="sgd", lr=0.05, schedule="constant", warmup_steps=0, grad_clip=1e9))
    assert isinstance(trainer.optimizer, torch.optim.SGD) and trainer.optimizer.defaults["momentum"] == 0
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_step()
    for old, p in zip(before, trainer.model.parameters()):  # no momentum, no decay: p -= lr * grad
        if p.grad is not None:
            torch.testing.assert_close(p.detach(), old - 0.05 * p.grad)
    out = train(tiny(optimizer="sgd", schedule="reference", lr=0.02), tmp_path, progress=False)
    lrs = out.metrics["lr"].tolist()
    assert lrs[-1] == pytest.approx(0.02 * 0.95 ** 40) and lrs == sorted(lrs, reverse=True)


def test_label_smoothing_changes_the_training_loss_as_cross_entropy_would():
    trainer = Trainer(tiny(label_smoothing=0.1))
    state = trainer.sampler.generator.get_state()
    episode = trainer.sampler.sample()
    trainer.sampler.generator.set_state(state)  # train_step draws this same episode
    with torch.no_grad():
        logits = trainer.model(episode.support, episode.support_labels, episode.query, episode.ways)
    flat, labels = logits.flatten(0, 1), episode.query_labels.flatten()
    loss, _ = trainer.train_step()
    assert loss == pytest.approx(F.cross_entropy(flat, labels, label_smoothing=0.1).item(), rel=1e-5)
    assert loss != pytest.approx(F.cross_entropy(flat, labels).item(), rel=1e-3)


@pytest.mark.parametrize("settings, message", [
    (dict(optimizer="adam"), "Unknown optimizer 'adam'"),
    (dict(schedule="step"), "Unknown schedule 'step'"),
    (dict(label_smoothing=-0.1), "label_smoothing must be a number in"),
    (dict(label_smoothing=1.0), "label_smoothing must be a number in"),
    (dict(augment_shift=-1), "augment_shift must be a whole number >= 0"),
    (dict(augment_shift=1.5), "augment_shift must be a whole number >= 0"),
    (dict(test_batch_size=0), "test_batch_size must be a whole number >= 1"),
    (dict(model_options={"local_features_from": "first"}), "Unknown local_features_from 'first'"),
])
def test_recipe_settings_are_checked(settings, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**settings).resolved()


def test_a_shift_as_large_as_the_image_is_refused_before_training():
    with pytest.raises(ConfigError, match="augment_shift must be below the image size"):
        tiny(augment_shift=28).resolved().task.check()


def test_the_shift_augmentation_reaches_training_episodes_only():
    plain, shifted = Trainer(tiny()), Trainer(tiny(augment_shift=2))
    assert shifted.sampler.augment_shift == 2
    assert not torch.equal(plain.sampler.sample().query, shifted.sampler.sample().query)
    assert shifted.validate() == plain.validate()  # same weights, same unshifted validation episodes


def test_the_trainer_warns_before_training_when_bf16_would_be_emulated(monkeypatch):
    from htlib import optim

    monkeypatch.setattr(optim, "native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no bf16 hardware"):
        Trainer(tiny(precision="bf16", device="cpu"), None)
