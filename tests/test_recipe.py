"""The recipe study: one baseline, arms that change one thing each, the same budget for all."""

from __future__ import annotations

import pandas as pd
import pytest

from htlib.config import TrainConfig, config_differences
from htlib.errors import ConfigError
from htlib.experiments.recipe import (ARMS, BASELINE, COLUMNS, FIDELITY_ARMS, RECIPE_BUDGETS, RecipeSpec, recipe_gaps,
                                     run_recipe)
from htlib.train import Trainer


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run folders and tables under tmp_path instead of the project (htlib.runs is the one place)."""
    monkeypatch.setattr("htlib.runs.RESULTS_ROOT", tmp_path)


pytestmark = pytest.mark.usefixtures("single_thread")

BUDGET = {"steps", "val_every", "warmup_steps"}  # what follows from an arm's own B or share of the budget


def test_the_baseline_is_the_quick_single_run_validated_every_tenth():
    baseline = RecipeSpec(profile="quick").config(BASELINE, 0).resolved()
    single = TrainConfig(profile="quick").resolved()
    # the test batch is the one the single run used (2 x 16), fixed so that every arm sees its episodes
    assert config_differences(single.to_dict(), baseline) == {"val_every": (250, 300), "test_batch_size": (None, 32)}


@pytest.mark.parametrize("arm", [name for name in ARMS if name != BASELINE])
def test_each_arm_differs_from_the_baseline_in_exactly_its_documented_settings(arm):
    spec = RecipeSpec(profile="quick")
    base, cfg = spec.config(BASELINE, 0).resolved(), spec.config(arm, 0).resolved()
    overrides, budget = ARMS[arm].overrides, ARMS[arm].budget
    own_budget = "episodes_per_step" in overrides or budget != 1
    assert set(config_differences(base.to_dict(), cfg)) == set(overrides) | (BUDGET if own_budget else set())
    for name, value in overrides.items():
        wanted = {**base.model_options, **value} if name == "model_options" else value
        assert getattr(cfg, name) == wanted, name
    # the same episodes for all, up to one batch where B does not divide the budget (B = 256: 188 steps)
    assert abs(cfg.steps * cfg.episodes_per_step - RECIPE_BUDGETS["quick"].episodes * budget) < cfg.episodes_per_step
    assert cfg.val_every == cfg.steps // 10 and cfg.test_batch_size == base.test_batch_size
    assert ARMS[arm].change and "\n" not in ARMS[arm].change


@pytest.mark.parametrize("profile", ["ci", "quick", "long", "paper"])
def test_every_arm_has_a_folder_of_its_own(profile):
    spec = RecipeSpec(profile=profile, seeds=[0, 1])
    folders = [run.folder for _, run in spec.runs()]
    assert len(set(folders)) == len(folders) == 2 * len(ARMS)
    base = RECIPE_BUDGETS[profile].episodes_per_step
    for (arm, run), folder in zip(spec.runs(), folders):
        batch = run.config.episodes_per_step
        assert folder.parent.name == f"{profile}-recipe" + ("" if batch == base else f"-b{batch}"), arm


def test_unknown_arms_are_refused(monkeypatch):
    with pytest.raises(ConfigError, match="Unknown arms \\['lr-1'\\]"):
        RecipeSpec(arms=["lr-1"]).arm_names()
    # trained in the order asked, the baseline first unless placed elsewhere; an arm asked twice trains once
    assert RecipeSpec(arms=["shift-2", "local-both", "shift-2"]).arm_names() == [BASELINE, "shift-2", "local-both"]
    assert RecipeSpec(arms=["embed-64", BASELINE]).arm_names() == ["embed-64", BASELINE]
    # a profile that trains recommended HT options has no baseline of today's defaults
    import dataclasses

    from htlib.profiles import PROFILES
    monkeypatch.setitem(PROFILES, "gpu", dataclasses.replace(PROFILES["gpu"], ht_options={"label_dim": 64}))
    with pytest.raises(ConfigError, match="trains the recommended recipe already"):
        RecipeSpec(profile="gpu").check()


def test_the_gpu_profile_trains_the_recommended_ht_options_on_the_papers_budget(monkeypatch):
    import dataclasses

    from htlib.profiles import PROFILES, RECOMMENDED_HT_OPTIONS
    from htlib.runs import make_run

    gpu = TrainConfig(profile="gpu").resolved()
    assert gpu.model_options == RECOMMENDED_HT_OPTIONS and gpu.episodes_per_step * gpu.steps == 4_000_000
    # how a profile's HT options apply (a stand-in, as the study recommends none beyond the defaults yet)
    monkeypatch.setitem(PROFILES, "gpu", dataclasses.replace(PROFILES["gpu"], ht_options={"label_dim": 64}))
    gpu = TrainConfig(profile="gpu").resolved()
    assert gpu.model_options == {"label_dim": 64} and "label_dim=64" in make_run(gpu).folder.name
    # a config's own options win over the profile's; other methods do not get the HT's options
    assert TrainConfig(profile="gpu", model_options={"label_dim": 16, "transformer_layers": 2}).resolved(
    ).model_options == {"label_dim": 16, "transformer_layers": 2}
    assert TrainConfig(profile="gpu", model_options={"transformer_layers": 2}).resolved().model_options == {
        "label_dim": 64, "transformer_layers": 2}
    assert TrainConfig(profile="gpu", method="protonet").resolved().model_options == {}
    assert TrainConfig(profile="long").resolved().model_options == {}


def test_two_arms_end_to_end_resume_and_skip(tmp_path, capsys):
    spec = RecipeSpec(profile="ci", dataset="synthetic", ways=5, arms=["smooth-0.1"], device="cpu")
    with pytest.raises(ConfigError, match="not in this study"):
        run_recipe(spec, progress=False, arms=["lr-3e-3"])
    (_, baseline), _ = spec.runs()
    Trainer(baseline).fit(progress=False, stop_at=2)  # an interrupted arm
    table = run_recipe(spec, progress=False)
    out = capsys.readouterr().out
    assert "resuming from" in out and "at step 2" in out
    assert list(table.columns) == COLUMNS and table["arm"].tolist() == [BASELINE, "smooth-0.1"]
    assert (table["episodes"] == RECIPE_BUDGETS["ci"].episodes).all()
    assert table["test_accuracy"].between(0, 1).all() and table["train_accuracy"].between(0, 1).all()
    pd.testing.assert_frame_equal(pd.read_csv(spec.table_path), table)
    assert spec.table_path == tmp_path / "runs" / "recipe_ci_synthetic.csv"
    again = run_recipe(spec, progress=False)
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 2 and "steps x" not in out
    pd.testing.assert_frame_equal(again, table)
    # a new seed of one arm adds its rows; the table keeps every finished run on disk
    more = RecipeSpec(profile="ci", dataset="synthetic", ways=5, arms=["smooth-0.1"], seeds=[1], device="cpu")
    grown = run_recipe(more, progress=False, arms=["smooth-0.1"])
    assert list(zip(grown["arm"], grown["seed"])) == [(BASELINE, 0), ("smooth-0.1", 0), ("smooth-0.1", 1)]
    pd.testing.assert_frame_equal(grown.iloc[:2], table)
    pd.testing.assert_frame_equal(pd.read_csv(spec.table_path), grown)


def test_no_time_trains_nothing_and_says_so(capsys):
    spec = RecipeSpec(profile="ci", dataset="synthetic", ways=5, arms=["lr-3e-3"], device="cpu")
    assert run_recipe(spec, progress=False, max_minutes=0).empty
    assert "2 of 2 recipe runs not trained (time limit of 0 min)" in capsys.readouterr().out
    assert spec.table_path.is_file()


def test_recipe_gaps_against_the_baseline():
    rows = [("baseline", 0, 0.80), ("baseline", 1, 0.82), ("lr-3e-3", 0, 0.90), ("lr-3e-3", 1, 0.92),
            ("lr-3e-4", 0, 0.70), ("lr-3e-4", 1, 0.72), ("shift-2", 0, 0.815), ("shift-2", 1, 0.81),
            ("sgd-reference", 0, 0.17), ("batch-256-lr-2e-3", 0, 0.20)]
    episodes = {"sgd-reference": 12000, "batch-256-lr-2e-3": 48128}  # a quarter budget; steps rounded up
    table = pd.DataFrame([{"arm": arm, "change": ARMS[arm].change, "seed": seed, "test_accuracy": acc,
                           "ci95": 0.02, "episodes": episodes.get(arm, 48000)} for arm, seed, acc in rows])
    gaps = recipe_gaps(table).set_index("arm")
    assert list(gaps.index) == ["lr-3e-3", "lr-3e-4", "shift-2", "sgd-reference", "batch-256-lr-2e-3"]
    # another budget is not ranked; a few more episodes from rounding the steps is the same budget
    assert gaps.loc["sgd-reference", "verdict"] == "other budget" and gaps.loc["batch-256-lr-2e-3", "verdict"] == "worse"
    assert gaps.loc["lr-3e-3", "gap"] == pytest.approx(0.10) and gaps.loc["lr-3e-3", "verdict"] == "better"
    assert gaps.loc["lr-3e-4", "gap"] == pytest.approx(-0.10) and gaps.loc["lr-3e-4", "verdict"] == "worse"
    assert gaps.loc["shift-2", "verdict"] == "no clear difference"
    # two seeds of CI 0.02 each: 0.02 / sqrt(2) per arm; the gap's CI adds both arms' in quadrature
    assert gaps.loc["lr-3e-3", "ci95"] == pytest.approx(0.02) and (gaps["seeds"][:3] == 2).all()
    with pytest.raises(ValueError, match="no baseline"):
        recipe_gaps(table[table["arm"] != BASELINE])


def test_recipe_gaps_compare_an_arm_with_the_baseline_on_its_own_seeds():
    rows = [("baseline", 0, 0.80), ("baseline", 1, 0.90), ("lr-3e-3", 0, 0.81), ("shift-2", 2, 0.5)]
    table = pd.DataFrame([{"arm": arm, "change": ARMS[arm].change, "seed": seed, "test_accuracy": acc,
                           "ci95": 0.01, "episodes": 48000} for arm, seed, acc in rows])
    with pytest.raises(ValueError, match="no seed in common with the baseline"):
        recipe_gaps(table)
    gaps = recipe_gaps(table[table["arm"] != "shift-2"]).set_index("arm")
    # against the baseline's seed 0 (0.80), not its two-seed mean (0.85)
    assert gaps.loc["lr-3e-3", "gap"] == pytest.approx(0.01) and gaps.loc["lr-3e-3", "seeds"] == 1


def test_the_command_line_trains_the_asked_arms_and_the_baseline(capsys):
    from htlib.cli import main

    assert main(["recipe", "--profile", "ci", "--dataset", "synthetic", "--ways", "5", "--arms", "smooth-0.1",
                 "--no-progress", "--device", "cpu"]) == 0
    table = pd.read_csv(RecipeSpec(profile="ci", dataset="synthetic", ways=5).table_path)
    assert sorted(table["arm"]) == [BASELINE, "smooth-0.1"]
    assert "2 runs in" in capsys.readouterr().out


# ---------------------------------------------------------------- the fidelity study (same machinery)


@pytest.mark.parametrize("arm", [name for name in FIDELITY_ARMS if name != BASELINE])
def test_each_fidelity_arm_changes_only_its_reference_choices(arm):
    spec = RecipeSpec(profile="quick", study="fidelity")
    base, cfg = spec.config(BASELINE, 0).resolved(), spec.config(arm, 0).resolved()
    overrides, budget = FIDELITY_ARMS[arm].overrides, FIDELITY_ARMS[arm].budget
    own_budget = "episodes_per_step" in overrides or budget != 1
    assert set(config_differences(base.to_dict(), cfg)) == set(overrides) | (BUDGET if own_budget else set())
    assert cfg.model_options == overrides.get("model_options", {})


def test_fidelity_runs_share_the_recipe_folders_on_vinyals_and_have_their_own_on_the_paper_protocol():
    recipe = {arm: run.folder for arm, run in RecipeSpec(profile="quick").runs()}
    vinyals = dict(RecipeSpec(profile="quick", study="fidelity").runs())
    paper = dict(RecipeSpec(profile="quick", study="fidelity", protocol="paper").runs())
    for arm in set(recipe) & set(vinyals):  # the same config: trained once, found by both studies
        assert vinyals[arm].folder == recipe[arm], arm
    folders = [run.folder for run in [*vinyals.values(), *paper.values()]]
    assert len(set(folders)) == len(folders) and all(len(f.name) < 200 for f in folders)
    assert all(run.config.split_scheme == "paper" and run.config.independent_queries for run in paper.values())
    assert paper["reference-model"].folder.name.startswith("ht-all-omniglot-20w1s-u0-c8-seed0-settings")
    assert RecipeSpec(profile="quick", study="fidelity", protocol="paper").table_path.name == \
        "fidelity_paper_quick_omniglot.csv"
    with pytest.raises(ConfigError, match="recipe study runs on the vinyals protocol"):
        RecipeSpec(study="recipe", protocol="paper")
    with pytest.raises(ConfigError, match="Unknown study 'fidelty'"):
        RecipeSpec(study="fidelty")


def test_a_fidelity_study_on_the_paper_protocol_trains_end_to_end(tmp_path):
    spec = RecipeSpec(profile="ci", dataset="synthetic", ways=5, device="cpu", study="fidelity", protocol="paper",
                      arms=["reference-model"])
    table = run_recipe(spec, progress=False)
    assert table["arm"].tolist() == [BASELINE, "reference-model"] and table["test_accuracy"].between(0, 1).all()
    assert spec.table_path == tmp_path / "runs" / "fidelity_paper_ci_synthetic.csv"
    assert recipe_gaps(table)["arm"].tolist() == ["reference-model"]


def test_the_curves_drawn_are_the_baseline_and_the_ends_of_the_study():
    from htlib.experiments import arms_to_draw

    gaps = pd.DataFrame({"arm": ["a", "b", "c", "d", "e", "f", "sgd"], "gap": [0.02, -0.01, 0.01, -0.3, -0.2, 0.0, -0.6],
                         "verdict": ["better"] + ["worse"] * 5 + ["other budget"]})
    assert arms_to_draw(gaps) == ["baseline", "a", "c", "b", "e", "d"]  # best two, then the worst three; not sgd
    assert arms_to_draw(gaps.iloc[:2]) == ["baseline", "a", "b"]  # fewer arms than asked: each once
