"""htlib.data.task: a Task owns the dataset, split and episode shape, loads each split once, builds
the samplers and refuses what its splits cannot hold; the trainer takes a Task or a model it is given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from htlib.config import TrainConfig
from htlib.errors import ConfigError
from htlib.methods import build_model
from htlib.train import Trainer
from htlib.utils import seed_everything

pytestmark = pytest.mark.usefixtures("single_thread")


def small(**changes) -> TrainConfig:
    base = dict(dataset="synthetic", ways=5, shots=1, queries=2, channels=4, profile="ci", steps=2,
                episodes_per_step=2, val_every=2, val_episodes=2, test_episodes=2,
                model_options={"transformer_layers": 1, "label_dim": 8, "shared_features": 8, "local_features": 4})
    return TrainConfig(**{**base, **changes}).resolved()


def test_a_config_gives_its_task_and_a_task_loads_each_split_once():
    cfg = small(unlabelled=2, augment_shift=1)
    task = cfg.task
    assert (task.dataset, task.ways, task.shots, task.queries, task.unlabelled, task.augment_shift) == (
        "synthetic", 5, 1, 2, 2, 1)
    assert task == cfg.task and hash(task) == hash(cfg.task)  # equal settings, equal tasks
    assert task.split("train") is task.split("train")
    assert task.replace(shots=2).split("train") is task.split("train")  # same images: kept
    assert task.image_shape == (1, 28, 28)
    with pytest.raises(ConfigError, match="Unknown split 'dev'"):
        task.split("dev")


def test_training_episodes_are_augmented_and_evaluation_episodes_are_not():
    task = small(augment_shift=2).task
    train = task.training_sampler(batch_size=3, seed=0)
    test = task.eval_sampler("test", batch_size=4, seed=1, shots=2, unlabelled=1)
    assert train.augment_rotations and train.augment_shift == 2 and train.batch_size == 3
    assert not test.augment_rotations and test.augment_shift == 0 and test.data.split == "test"
    assert (test.shots, test.unlabelled, test.ways) == (2, 1, 5)  # another support set at test


def test_a_task_its_splits_cannot_hold_is_refused_naming_the_split():
    with pytest.raises(ConfigError, match="The train episodes cannot be drawn: .*need 500 classes"):
        small(ways=500).task.check()


def test_nothing_but_the_task_loads_a_split():
    root = Path(__file__).resolve().parents[1] / "htlib"
    callers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if re.search(r"\bload_split\(", p.read_text(encoding="utf-8")))
    assert callers == ["data/__init__.py", "data/task.py"]


def test_the_trainer_trains_a_model_and_a_task_it_is_given():
    cfg = small()
    seed_everything(cfg.seed)
    model = build_model(cfg, cfg.task.image_shape)  # built as the trainer would: the same start
    task = cfg.task
    given = Trainer(cfg, None, model=model, task=task)
    assert given.model is model and given.task is task
    own = Trainer(cfg, None)
    assert float(given.train_step()[0]) == pytest.approx(float(own.train_step()[0]), rel=1e-6)


def test_the_trainer_refuses_a_model_or_task_that_is_not_the_configs():
    cfg = small()
    with pytest.raises(ConfigError, match="not a ht-all model of this config.*parameters differ"):
        Trainer(cfg, None, model=build_model(small(channels=6), (1, 28, 28)))
    with pytest.raises(ConfigError, match="The task passed is not the config's"):
        Trainer(cfg, None, task=small(shots=2).task)
    assert torch.is_tensor(Trainer(cfg, None).train_step()[0])
