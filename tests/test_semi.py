"""Semi-supervised support sets: soft k-means ProtoNet, unlabelled tokens, the experiment runner."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import episode

from htlib.data import EpisodeSampler
from htlib.errors import CheckpointError
from htlib.experiments.semi import COLUMNS, SemiSpec, run_semi
from htlib.models import CNNSpec, ProtoNet
from htlib.train import TrainConfig, Trainer, train
from htlib.utils import seed_everything

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.numeric]  # numeric: see pyproject.toml


def test_soft_kmeans_step_matches_the_formula_by_hand():
    # 1-d embeddings: class 0 at 0, class 1 at 4; one unlabelled point at 1
    emb = torch.tensor([[[0.0], [4.0], [1.0]]], dtype=torch.float64)
    labels = torch.tensor([[0, 1, -1]])
    protos = ProtoNet.prototypes(emb, labels, 2)
    refined = ProtoNet.refine(emb, labels, protos)
    z = torch.softmax(torch.tensor([-(1.0 ** 2), -(3.0 ** 2)], dtype=torch.float64), dim=0)
    expected = torch.stack([(0.0 + z[0] * 1.0) / (1 + z[0]), (4.0 + z[1] * 1.0) / (1 + z[1])]).reshape(1, 2, 1)
    torch.testing.assert_close(refined, expected)
    # without unlabelled samples the refinement changes nothing
    torch.testing.assert_close(ProtoNet.refine(emb[:, :2], labels[:, :2], protos), protos)


def test_soft_kmeans_uses_unlabelled_samples_and_plain_protonet_ignores_them():
    xs, ys, xq = episode(b=2, n=3, k=1, q=2, dtype=torch.float64)
    extra = torch.randn(2, 3, *xs.shape[2:], dtype=torch.float64)
    xs_u, ys_u = torch.cat([xs, extra], 1), torch.cat([ys, torch.full((2, 3), -1)], 1)
    seed_everything(0)
    plain = ProtoNet(CNNSpec(channels=4)).double()
    skm = ProtoNet(CNNSpec(channels=4), soft_kmeans_steps=2).double()
    skm.load_state_dict(plain.state_dict())
    torch.testing.assert_close(plain(xs_u, ys_u, xq, 3), plain(xs, ys, xq, 3))
    torch.testing.assert_close(skm(xs, ys, xq, 3), plain(xs, ys, xq, 3))  # no unlabelled: plain ProtoNet
    assert not torch.allclose(skm(xs_u, ys_u, xq, 3), plain(xs_u, ys_u, xq, 3))
    with pytest.raises(ValueError, match="soft_kmeans_steps"):
        ProtoNet(CNNSpec(channels=4), soft_kmeans_steps=-1)


def test_ht_trained_with_one_unlabelled_sample_is_tested_with_other_numbers(tmp_path):
    cfg = TrainConfig(dataset="synthetic", ways=3, shots=1, queries=2, unlabelled=1, channels=4, profile="ci",
                      steps=3, episodes_per_step=2, val_every=3, test_episodes=8)
    trainer = Trainer(cfg)
    trainer.fit(progress=False)
    for u, d in [(0, 0), (1, 0), (4, 0), (2, 2)]:
        acc = trainer.test(unlabelled=u, distractors=d)
        assert 0 <= acc.accuracy <= 1 and acc.episodes == 8
    # four unlabelled samples per class (trained with one) change what the HT writes
    ep = EpisodeSampler(trainer.val_data, 3, 1, 2, unlabelled=4, batch_size=2, seed=0).sample()
    model = trainer.model.eval()
    with torch.no_grad():
        with_unlabelled = model(*ep.support_with_unlabelled(), ep.query, 3)
        without = model(ep.support, ep.support_labels, ep.query, 3)
    assert ep.support_with_unlabelled()[0].shape[1] == 3 + 12
    assert not torch.allclose(with_unlabelled, without)


def test_init_from_starts_at_the_given_weights(tmp_path):
    base = TrainConfig(dataset="synthetic", ways=3, shots=1, queries=2, channels=4, profile="ci", method="protonet",
                       steps=2, episodes_per_step=2, test_episodes=4)
    train(base, tmp_path / "base", progress=False)
    weights = torch.load(tmp_path / "base" / "model.pt")
    warm = Trainer(TrainConfig(**{**base.to_dict(), "init_from": str(tmp_path / "base" / "model.pt")}))
    for name, value in warm.model.state_dict().items():
        torch.testing.assert_close(value, weights[name])
    with pytest.raises(CheckpointError, match="init_from"):
        Trainer(TrainConfig(**{**base.to_dict(), "init_from": str(tmp_path / "missing.pt")}))


def test_semi_runner_writes_every_condition_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("htlib.runs.RESULTS_ROOT", tmp_path)
    spec = SemiSpec(profile="ci", dataset="synthetic", ways=3, channels=4, methods=["ht-logits", "protonet-softkmeans"],
                    train_unlabelled=2, test_unlabelled=[0, 3], distractors=1)
    table = run_semi(spec, progress=False)
    assert list(table.columns) == COLUMNS
    assert len(table) == 2 * 2 * 3  # methods x arms (U = 0, 2) x tests (U 0, U 3, U 2 with distractors)
    assert set(table["train_unlabelled"]) == {0, 2} and set(table["test_unlabelled"]) == {0, 2, 3}
    assert table.loc[table["test_distractors"] > 0, "test_unlabelled"].eq(2).all()
    assert table["test_accuracy"].between(0, 1).all()
    arm = spec.arm("ht-logits", 2)
    assert json.loads((arm.folder / "config.json").read_text())["init_from"].startswith("runs/ci/")
    capsys.readouterr()
    again = run_semi(spec, progress=False)
    assert "continuing" not in capsys.readouterr().out  # nothing trained twice
    assert len(again) == len(table)
    with pytest.raises(ValueError, match="train_unlabelled"):
        SemiSpec(train_unlabelled=0).arms()
