"""The campaign (htlib.campaign): a long run trained in segments that resume exactly."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from htlib.campaign import SEGMENT_COLUMNS, TEST_COLUMNS, CampaignSpec, run_campaign, campaign_tests, retest, segments
from htlib.errors import ConfigError
from htlib.train import Trainer, load_trained, train

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.numeric]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setattr("htlib.runs.RESULTS_ROOT", tmp_path)


def smoke(**changes) -> CampaignSpec:
    return CampaignSpec(profile="ci", dataset="synthetic", ways=5, device="cpu", **changes)


def test_segments_resume_bit_for_bit_and_record_the_machine(tmp_path):
    spec = smoke()
    folder = spec.run().folder
    assert folder == tmp_path / "runs" / "ci" / "ht-all-synthetic-5w1s-u0-c8-seed0-split_scheme=paper-independent_queries=True"
    first = run_campaign(spec, minutes=1e-4)  # the deadline passes during the first step: it stops after it
    assert first["from_step"] == 0 and 1 <= first["to_step"] < 20
    assert (folder / "checkpoint.pt").is_file() and (folder / "model.pt").is_file()
    assert not (folder / "result.json").exists()
    assert json.loads((folder / "config.json").read_text())["independent_queries"] is True
    load_trained(folder / "model.pt", "cpu")  # the best weights so far load as any run's
    second = run_campaign(spec, minutes=10)
    assert (second["from_step"], second["to_step"]) == (first["to_step"], 20)
    table = segments(folder)
    assert list(table.columns) == SEGMENT_COLUMNS and len(table) == 2
    assert table["cpu"].str.len().min() > 0 and set(table["capability"]) <= {"AVX512", "AVX2", "DEFAULT", "ZVECTOR"}
    assert table["code"].str.len().min() >= 7  # the commit that trained each segment
    assert (folder / "result.json").is_file()
    tested = campaign_tests(folder)  # the best weights tested after each segment, at 1 and 5 shots
    assert list(tested.columns) == TEST_COLUMNS and list(tested["shots"]) == [1, 5, 1, 5]
    assert list(tested["step"]) == [first["to_step"]] * 2 + [20] * 2
    assert tested["test_accuracy"].between(0, 1).all() and (tested["test_episodes"] > 0).all()
    final = json.loads((folder / "result.json").read_text())
    assert tested["test_accuracy"].iloc[2] == final["test_accuracy"]  # the same weights, the same episodes
    # (the 5-shot row's accuracy is not compared with the 1-shot one: a smoke model that ignores its
    # support set scores the same on both, which happened on an Intel Xeon's rounding)
    straight = train(spec.config(), tmp_path / "straight", progress=False)
    resumed = pd.read_csv(folder / "metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(resumed, straight.metrics.drop(columns="seconds"))  # same process, same machine
    assert json.loads((folder / "result.json").read_text())["test_accuracy"] == straight.result["test_accuracy"]


def test_time_based_checkpoints_and_bad_durations(monkeypatch):
    with pytest.raises(ConfigError, match="minutes and save_minutes must be > 0"):
        run_campaign(smoke(), minutes=0)
    saves = []
    original = Trainer.save
    monkeypatch.setattr(Trainer, "save", lambda self: (saves.append(self.step), original(self))[1])
    run_campaign(smoke(seed=1), minutes=10, save_minutes=1e-6)  # due after every step
    assert saves == list(range(1, 21))
    saves.clear()
    run_campaign(smoke(seed=2), minutes=10)  # every 10 minutes: only the validations (every 10 steps) save
    assert saves == [10, 20]


def test_status_and_the_readme_row_come_from_the_files(tmp_path):
    from htlib.campaign import status
    from htlib.summaries import campaign_section

    assert "No campaign started yet" in campaign_section([])
    run_campaign(smoke(), minutes=1e-4)
    (found,) = status(tmp_path / "runs" / "ci")
    assert found["steps"] < found["total_steps"] == 20 and found["total_episodes"] == 80
    assert found["segments"] == 1 and found["result"] is None and found["split_scheme"] == "paper"
    assert set(found["tests"]) == {1, 5} and found["tests"][1][2] == found["episodes"]
    row = campaign_section([found])
    one, five = (f"{100 * found['tests'][k][0]:.1f} ± {100 * found['tests'][k][1]:.1f}%" for k in (1, 5))
    assert f"| `{found['name']}` | `paper` | {found['episodes']} of 80 (" in row
    assert f"| {one} | {five} | – |" in row  # tested now at 1 and 5 shots; no final test yet


def test_testing_alone_needs_a_checkpoint_and_appends_rows(tmp_path):
    with pytest.raises(ConfigError, match="No campaign checkpoint"):
        retest(smoke(seed=3))
    run_campaign(smoke(seed=3), minutes=1e-4)
    folder = smoke(seed=3).run().folder
    again = retest(smoke(seed=3))
    table = campaign_tests(folder)
    assert len(table) == 4 and [r["shots"] for r in again] == [1, 5]
    assert table["test_accuracy"].iloc[:2].tolist() == table["test_accuracy"].iloc[2:].tolist()  # same weights


def test_the_command_wants_minutes_or_test_only(capsys):
    from htlib.cli import main

    for argv in (["campaign"], ["campaign", "--minutes", "1", "--test-only"]):
        assert main(argv) == 2
        assert "--minutes M" in capsys.readouterr().err


def test_the_5_shot_fine_tune_starts_from_the_campaign_best_weights_and_says_so(tmp_path):
    from htlib.campaign import status
    from htlib.errors import CheckpointError

    tuned = smoke(shots=5)
    with pytest.raises(CheckpointError, match="init_from: no weights at .*model.pt; train that run first"):
        run_campaign(tuned, minutes=10)  # no 1-shot campaign yet
    run_campaign(smoke(), minutes=10)  # the whole 1-shot smoke campaign (20 steps)
    cfg = tuned.config().resolved()
    assert cfg.shots == 5 and cfg.steps == 2 and cfg.init_from == "runs/ci/" + smoke().run().folder.name + "/model.pt"
    run_campaign(tuned, minutes=10)
    folder = tuned.run().folder
    assert folder.name.startswith("ht-all-synthetic-5w5s-") and folder.parent == smoke().run().folder.parent
    start = json.loads((folder / "init.json").read_text())
    assert start["from"] == smoke().run().folder.name and start["trained_episodes"] == 80
    found = {c["name"]: c for c in status(folder.parent)}
    assert found[folder.name]["shots"] == 5 and found[folder.name]["init"] == start
    assert found[smoke().run().folder.name]["shots"] == 1 and found[smoke().run().folder.name]["init"] is None
    assert set(campaign_tests(folder)["shots"]) == {1, 5}


def test_a_segment_stopped_by_ctrl_c_is_recorded_and_resumes(tmp_path, monkeypatch):
    """Ctrl-C stops after the current step; that segment's episodes still count in segments.csv."""
    import os
    import signal

    from htlib.train import TrainingInterrupted

    spec, calls = smoke(seed=3), []
    original = Trainer.train_step

    def step_then_ctrl_c(self):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C, during the third step
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", step_then_ctrl_c)
    with pytest.raises(TrainingInterrupted):
        run_campaign(spec, minutes=10)
    folder = spec.run().folder
    table = segments(folder)
    assert list(table[["from_step", "to_step", "episodes"]].iloc[0]) == [0, 3, 3 * spec.config().resolved().episodes_per_step]
    assert (folder / "model.pt").is_file() and campaign_tests(folder).empty  # no tests: Ctrl-C wants out
    monkeypatch.setattr(Trainer, "train_step", original)
    assert (run_campaign(spec, minutes=10)["from_step"], len(segments(folder))) == (3, 2)
