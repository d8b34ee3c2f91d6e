"""Episode sampling: shapes, labels, determinism, augmentation, impossible requests."""

from __future__ import annotations

import pytest
import torch

from htlib.data import EpisodeSampler, load_omniglot, to_float
from htlib.data.synthetic import load_synthetic


@pytest.fixture(scope="module")
def glyphs():
    return load_synthetic("train", classes={"train": 30})


def _locate(data, image):
    """(class, drawing, quarter turns) of an episode image within the split."""
    for c in range(data.num_classes):
        for k in range(4):
            imgs = torch.rot90(to_float(data.class_images(c)), k, dims=(-2, -1))
            hits = (imgs == image).flatten(1).all(dim=1).nonzero()
            if len(hits):
                return c, int(hits[0]), k
    raise AssertionError("episode image not found in the split")


def test_shapes_and_labels(glyphs):
    ep = EpisodeSampler(glyphs, ways=5, shots=2, queries=3, unlabelled=1, batch_size=4, seed=0).sample()
    assert ep.support.shape == (4, 10, 1, 28, 28)
    assert ep.query.shape == (4, 15, 1, 28, 28)
    assert ep.unlabelled.shape == (4, 5, 1, 28, 28)
    assert ep.support_labels[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep.query_labels.shape == (4, 15) and ep.classes.shape == (4, 5)
    assert ep.support.min() >= -1 and ep.support.max() <= 1
    images, labels = ep.support_with_unlabelled()
    assert images.shape == (4, 15, 1, 28, 28) and (labels[:, 10:] == -1).all()


def test_images_come_from_their_slot_class_without_repeats(glyphs):
    ep = EpisodeSampler(glyphs, ways=3, shots=2, queries=2, unlabelled=1, batch_size=2, seed=1).sample()
    for b in range(2):
        seen = set()
        for images, labels in [(ep.support, ep.support_labels), (ep.query, ep.query_labels),
                               (ep.unlabelled, ep.unlabelled_labels)]:
            for img, label in zip(images[b], labels[b]):
                c, drawing, turns = _locate(glyphs, img)
                assert c == ep.classes[b, label] and turns == 0
                assert (c, drawing) not in seen  # support, query, unlabelled never share an image
                seen.add((c, drawing))


def test_deterministic_and_slots_permuted(glyphs):
    a = EpisodeSampler(glyphs, 5, 1, 1, batch_size=8, seed=7).sample()
    b = EpisodeSampler(glyphs, 5, 1, 1, batch_size=8, seed=7).sample()
    c = EpisodeSampler(glyphs, 5, 1, 1, batch_size=8, seed=8).sample()
    assert torch.equal(a.support, b.support) and torch.equal(a.classes, b.classes)
    assert not torch.equal(a.classes, c.classes)
    # slot 0 is not always the smallest class index: slots are in random order
    assert not (a.classes == a.classes.sort(dim=1).values).all()
    assert len(set(a.classes.flatten().tolist())) > 5  # episodes draw different classes


def test_rotation_augmentation_rotates_whole_classes(glyphs):
    ep = EpisodeSampler(glyphs, 4, 2, 1, batch_size=4, augment_rotations=True, seed=0).sample()
    turns = set()
    for b in range(4):
        for slot in range(4):
            members = (ep.support_labels[b] == slot).nonzero().flatten()
            per_image = {_locate(glyphs, ep.support[b, i])[2] for i in members}
            q = (ep.query_labels[b] == slot).nonzero().flatten()
            per_image |= {_locate(glyphs, ep.query[b, i])[2] for i in q}
            assert len(per_image) == 1  # one rotation for the whole class
            turns |= per_image
    assert len(turns) > 1


def test_vinyals_rotation_classes(omniglot_data_dir):
    data = load_omniglot("val", "vinyals", omniglot_data_dir)
    ep = EpisodeSampler(data, ways=10, shots=1, queries=1, batch_size=2, seed=0).sample()
    for b in range(2):
        for slot in range(10):
            cls = int(ep.classes[b, slot])
            expected = to_float(data.class_images(cls))  # rotation of the class applied
            assert (expected == ep.support[b, slot]).flatten(1).all(dim=1).any()


def test_distractors_are_outside_the_episode(glyphs):
    ep = EpisodeSampler(glyphs, 3, 1, 1, unlabelled=2, distractors=2, batch_size=2, seed=0).sample()
    assert ep.unlabelled.shape == (2, 10, 1, 28, 28)
    assert ep.unlabelled_labels[0].tolist() == [0, 0, 1, 1, 2, 2, -1, -1, -1, -1]
    for b in range(2):
        for img in ep.unlabelled[b, 6:]:
            assert _locate(glyphs, img)[0] not in ep.classes[b].tolist()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(ways=31, shots=1, queries=1), "need 31 classes.*only 30"),
        (dict(ways=5, shots=10, queries=10, unlabelled=1), "10 \\+ 10 \\+ 1 = 21 images.*only 20"),
        (dict(ways=29, shots=1, queries=1, unlabelled=1, distractors=2), "31 classes"),
        (dict(ways=5, shots=0, queries=1), "shots must be an integer >= 1"),
        (dict(ways=5, shots=1, queries=1, distractors=1), "set unlabelled"),
    ],
)
def test_impossible_requests_fail_at_construction(glyphs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        EpisodeSampler(glyphs, **kwargs)
