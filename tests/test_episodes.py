"""Episode sampling: shapes, labels, determinism, augmentation, impossible requests.

Every test runs for both samplers, the reference EpisodeSampler and the fast DeviceEpisodeSampler
(here on the CPU): passing the same tests is how we show they draw the same kind of episodes."""

from __future__ import annotations

import pytest
import torch

from htlib.data import EpisodeSampler, load_omniglot, to_float
from htlib.data.device_episodes import DeviceEpisodeSampler
from htlib.data.episodes import draw_offsets, shift_images
from htlib.data.synthetic import load_synthetic


@pytest.fixture(params=[EpisodeSampler, DeviceEpisodeSampler], ids=["reference", "device"])
def Sampler(request):
    return request.param


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


def test_shapes_and_labels(Sampler, glyphs):
    ep = Sampler(glyphs, ways=5, shots=2, queries=3, unlabelled=1, batch_size=4, seed=0).sample()
    assert ep.support.shape == (4, 10, 1, 28, 28)
    assert ep.query.shape == (4, 15, 1, 28, 28)
    assert ep.unlabelled.shape == (4, 5, 1, 28, 28)
    assert ep.support_labels[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep.query_labels.shape == (4, 15) and ep.classes.shape == (4, 5)
    assert ep.support.min() >= -1 and ep.support.max() <= 1
    images, labels = ep.support_with_unlabelled()
    assert images.shape == (4, 15, 1, 28, 28) and (labels[:, 10:] == -1).all()


def test_images_come_from_their_slot_class_without_repeats(Sampler, glyphs):
    ep = Sampler(glyphs, ways=3, shots=2, queries=2, unlabelled=1, batch_size=2, seed=1).sample()
    for b in range(2):
        seen = set()
        for images, labels in [(ep.support, ep.support_labels), (ep.query, ep.query_labels),
                               (ep.unlabelled, ep.unlabelled_labels)]:
            for img, label in zip(images[b], labels[b]):
                c, drawing, turns = _locate(glyphs, img)
                assert c == ep.classes[b, label] and turns == 0
                assert (c, drawing) not in seen  # support, query, unlabelled never share an image
                seen.add((c, drawing))


def test_deterministic_and_slots_permuted(Sampler, glyphs):
    a = Sampler(glyphs, 5, 1, 1, batch_size=8, seed=7).sample()
    b = Sampler(glyphs, 5, 1, 1, batch_size=8, seed=7).sample()
    c = Sampler(glyphs, 5, 1, 1, batch_size=8, seed=8).sample()
    assert torch.equal(a.support, b.support) and torch.equal(a.classes, b.classes)
    assert not torch.equal(a.classes, c.classes)
    # slot 0 is not always the smallest class index: slots are in random order
    assert not (a.classes == a.classes.sort(dim=1).values).all()
    assert len(set(a.classes.flatten().tolist())) > 5  # episodes draw different classes


def test_rotation_augmentation_rotates_whole_classes(Sampler, glyphs):
    ep = Sampler(glyphs, 4, 2, 1, batch_size=4, augment_rotations=True, seed=0).sample()
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


def test_vinyals_rotation_classes(Sampler, omniglot_data_dir):
    data = load_omniglot("val", "vinyals", omniglot_data_dir)
    ep = Sampler(data, ways=10, shots=1, queries=1, batch_size=2, seed=0).sample()
    for b in range(2):
        for slot in range(10):
            cls = int(ep.classes[b, slot])
            expected = to_float(data.class_images(cls))  # rotation of the class applied
            assert (expected == ep.support[b, slot]).flatten(1).all(dim=1).any()


def test_distractors_are_outside_the_episode(Sampler, glyphs):
    ep = Sampler(glyphs, 3, 1, 1, unlabelled=2, distractors=2, batch_size=2, seed=0).sample()
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
        (dict(ways=5, shots=1, queries=1, augment_shift=-1), "augment_shift must be an integer >= 0"),
        (dict(ways=5, shots=1, queries=1, augment_shift=28), "augment_shift must be below the image size"),
    ],
)
def test_impossible_requests_fail_at_construction(Sampler, glyphs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Sampler(glyphs, **kwargs)


def test_shift_images_moves_each_image_by_its_offset_and_fills_with_zeros():
    images = torch.zeros(3, 1, 6, 6, dtype=torch.uint8)
    images[:, 0, 2, 3] = 200
    images[:, 0, 0, 0] = 9  # leaves the image when moved up or left
    moved = shift_images(images, torch.tensor([[1, -2], [0, 0], [-2, 2]]))  # (down, right)
    assert moved.shape == images.shape and moved.dtype == images.dtype
    assert moved[0, 0, 3, 1] == 200 and moved[2, 0, 0, 5] == 200
    assert torch.equal(moved[1], images[1])
    assert moved[0].sum() == 200 and moved[2].sum() == 200  # the corner pixel moved out, zeros came in


def test_shift_augmentation_moves_images_by_the_drawn_offsets(Sampler, glyphs):
    settings = dict(ways=5, shots=2, queries=3, unlabelled=1, batch_size=4, augment_rotations=True)
    plain = Sampler(glyphs, **settings, seed=3)
    shifted = Sampler(glyphs, **settings, seed=3, augment_shift=2)
    base, ep = plain.sample(), shifted.sample()
    # the offsets are drawn last, so the plain sampler's generator now stands where they were drawn
    offsets = draw_offsets(4 * 5 * 6, 2, plain.generator)  # B x N x (K + Q + U) images
    assert offsets.abs().max() <= 2 and (offsets != 0).any()
    for name in ("support", "query", "unlabelled"):
        assert getattr(ep, name).shape == getattr(base, name).shape
    assert torch.equal(ep.support_labels, base.support_labels) and torch.equal(ep.classes, base.classes)
    # images as the sampler holds them, (B, N, K+Q+U, C, H, W) in [-1, 1]: 0 = background = -1
    def per_class(e):
        return torch.cat([e.support.unflatten(1, (5, 2)), e.query.unflatten(1, (5, 3)),
                          e.unlabelled.unflatten(1, (5, 1))], dim=2)
    expected = shift_images((per_class(base) + 1).flatten(0, 2), offsets).view_as(per_class(base)) - 1
    torch.testing.assert_close(per_class(ep), expected)
    again = Sampler(glyphs, **settings, seed=3, augment_shift=2).sample()
    assert torch.equal(again.query, ep.query) and not torch.equal(ep.query, base.query)


def test_every_class_and_drawing_is_equally_likely_in_every_slot(Sampler, glyphs):
    ep = Sampler(glyphs, ways=5, shots=1, queries=1, batch_size=3000, seed=0).sample()
    for slot in (0, 4):  # 3000 episodes x 1 slot over 30 classes: 100 expected per class
        counts = torch.bincount(ep.classes[:, slot], minlength=glyphs.num_classes)
        assert counts.min() > 50 and counts.max() < 150, counts
    assert len({_locate(glyphs, img)[1] for img in ep.support[:200, 0]}) == glyphs.per_class


def test_generator_state_resumes_the_stream(Sampler, glyphs):
    first = Sampler(glyphs, 5, 1, 2, batch_size=4, augment_rotations=True, augment_shift=1, seed=4)
    first.sample()
    state = first.generator.get_state()
    expected = first.sample()
    second = Sampler(glyphs, 5, 1, 2, batch_size=4, augment_rotations=True, augment_shift=1, seed=99)
    second.generator.set_state(state)
    got = second.sample()
    assert torch.equal(got.support, expected.support) and torch.equal(got.classes, expected.classes)


def test_shift_with_a_fixed_pad_equals_the_smallest_pad():
    images = torch.randint(0, 255, (6, 1, 8, 8), dtype=torch.uint8)
    offsets = torch.tensor([[1, -1], [0, 0], [-1, 1], [1, 1], [0, -1], [-1, 0]])
    assert torch.equal(shift_images(images, offsets, pad=3), shift_images(images, offsets))
