"""Behavioural tests of the ProtoNet and MAML baselines (htlib.models.protonet, htlib.models.maml).

Tiny configs (2 CPU cores); float64 where an equality up to rounding is checked. BatchNorm uses the
statistics of the batch it is given, so an "identical" image gives an identical embedding only when
it sits in an identical batch; tests that compare embeddings build them that way.
"""

from __future__ import annotations

import copy

import pytest
from helpers import BAD_INPUTS, adam_fit, broken_episode, episode
import torch
import torch.nn.functional as F

from htlib.models import MAML, CNNSpec, ProtoNet, cnn_forward
from htlib.utils import seed_everything


pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.numeric]  # numeric: see pyproject.toml


def randomise_bn(model: torch.nn.Module) -> None:
    """Non-identity BN scale/shift, so that tests exercise them too."""
    with torch.no_grad():
        for p in model.bn.parameters():
            p.add_(0.3 * torch.randn_like(p))


def make_protonet(channels: int = 4, dtype=torch.float64, seed: int = 0, **spec) -> ProtoNet:
    seed_everything(seed)
    model = ProtoNet(CNNSpec(channels=channels, **spec)).to(dtype)
    randomise_bn(model)
    return model


def make_maml(channels: int = 4, dtype=torch.float64, seed: int = 0, max_ways: int = 5,
              inner_steps: int = 2, first_order: bool = False, **spec) -> MAML:
    seed_everything(seed)
    model = MAML(CNNSpec(channels=channels, **spec), max_ways=max_ways, inner_steps=inner_steps,
                 first_order=first_order).to(dtype)
    randomise_bn(model)
    return model




MODELS = {"protonet": make_protonet, "maml": make_maml}


# ---------------------------------------------------------------- ProtoNet


def test_protonet_prototypes_are_class_means_and_logits_minus_squared_distances() -> None:
    model = make_protonet()
    xs, ys, xq = episode(2, 3, 3, q=4)
    ys = ys[:, torch.randperm(9)]  # classes interleaved in the support set
    logits = model(xs, ys, xq, 3)
    emb_s, emb_q = model.embed(xs), model.embed(xq)  # (B, 9, C), (B, 4, C)
    for e in range(2):
        protos = torch.stack([emb_s[e][ys[e] == c].mean(dim=0) for c in range(3)])  # (N, C)
        torch.testing.assert_close(model.prototypes(emb_s, ys, 3)[e], protos)
        dist2 = torch.stack([((emb_q[e] - p) ** 2).sum(dim=-1) for p in protos], dim=-1)  # (Q, N)
        torch.testing.assert_close(logits[e], -dist2)
    # Labels -1 are left out of the means.
    ys_u = ys.clone()
    ys_u[:, 0] = -1
    protos_u = model.prototypes(emb_s, ys_u, 3)
    c0 = int(ys[0, 0])
    torch.testing.assert_close(protos_u[0, c0], emb_s[0, 1:][ys[0, 1:] == c0].mean(dim=0))


def test_protonet_query_equal_to_a_support_image_is_nearest_its_class() -> None:
    """Query set = support set (same images, same order) gives the same BN statistics, hence the same
    embeddings; in 1-shot each prototype is one embedding, so query i sits exactly on its prototype."""
    model = make_protonet()
    xs, ys, _ = episode(2, 5, 1)
    perm = torch.randperm(5)
    ys = ys[:, perm]
    logits = model(xs, ys, xs, 5)  # (B, 5, 5)
    assert (logits.argmax(dim=-1) == ys).all()
    torch.testing.assert_close(logits.gather(-1, ys.unsqueeze(-1)), torch.zeros(2, 5, 1, dtype=torch.float64))
    assert (logits.max(dim=-1).values == logits.gather(-1, ys.unsqueeze(-1)).squeeze(-1)).all()


def test_protonet_support_order_does_not_matter() -> None:
    model = make_protonet()
    xs, ys, xq = episode(2, 4, 2, q=5)
    perm = torch.randperm(8)
    torch.testing.assert_close(model(xs[:, perm], ys[:, perm], xq, 4), model(xs, ys, xq, 4))


def test_protonet_relabelling_permutes_logit_columns_exactly() -> None:
    """No per-class parameters: renaming classes y -> perm[y] moves column c to column perm[c]."""
    model = make_protonet()
    xs, ys, xq = episode(2, 4, 2, q=5)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(model(xs, perm[ys], xq, 4)[..., perm], model(xs, ys, xq, 4))


def test_protonet_ignores_unlabelled_samples() -> None:
    """Unlabelled samples touch neither the prototypes nor the support set's BN statistics."""
    model = make_protonet()
    xs, ys, xq = episode(2, 3, 2, q=4)
    extra = 5.0 * torch.randn(2, 3, 1, 28, 28, dtype=torch.float64)
    xs_u = torch.cat([extra[:, :1], xs[:, :3], extra[:, 1:], xs[:, 3:]], dim=1)  # interleaved
    ys_u = torch.cat([torch.full((2, 1), -1), ys[:, :3], torch.full((2, 2), -1), ys[:, 3:]], dim=1)
    torch.testing.assert_close(model(xs_u, ys_u, xq, 3), model(xs, ys, xq, 3))
    ys_bad = ys_u.clone()
    ys_bad[1, 1] = -1  # episode 1 would keep 5 labelled samples, episode 0 six
    ys_bad[1, 2] = 0
    with pytest.raises(ValueError, match="same number of labelled"):
        model(xs_u, ys_bad, xq, 3)


def test_protonet_overfits_one_tiny_episode() -> None:
    seed_everything(0)
    model = ProtoNet(CNNSpec(channels=8))
    xs, ys, xq = episode(1, 5, 2, q=10, dtype=torch.float32)
    yq = torch.arange(5).repeat(2)
    losses = adam_fit(model, xs, ys, xq, yq, 5, steps=40)
    logits = model(xs, ys, xq, 5)[0]
    assert losses[0] > 1.0  # random queries: it did have something to learn
    assert F.cross_entropy(logits, yq).item() < 0.05
    assert (logits.argmax(-1) == yq).all()


# ---------------------------------------------------------------- MAML


def test_maml_inner_loop_reduces_each_episodes_support_loss() -> None:
    """From a fresh init (zero head: loss log N), each inner step lowers every episode's support loss.

    The drop is modest at the defaults (5 steps, lr 0.1, about -0.2 nats here): the meta-learned init
    is what makes a few steps enough.
    """
    model = make_maml()
    xs, ys, _ = episode(3, 5, 2)
    losses = []  # per number of steps: (B,) support losses
    for steps in [0, 1, 3, 5]:
        model.inner_steps = steps
        w = model.initial_weights(3, 5) if steps == 0 else model.adapt(xs, ys, 5)
        losses.append(torch.stack([
            model.support_loss({k: v[e : e + 1] for k, v in w.items()}, xs[e : e + 1], ys[e : e + 1])
            for e in range(3)
        ]))
    log5 = torch.log(torch.tensor(5.0, dtype=torch.float64))
    torch.testing.assert_close(losses[0], log5.expand(3))  # the zero head predicts uniformly
    for fewer, more in zip(losses, losses[1:]):
        assert (more < fewer).all(), (fewer, more)
    assert (losses[-1] < log5 - 0.05).all()
    # Adapted weights are per episode and differ between episodes.
    assert w["conv1"].shape == (3, 4, 4, 3, 3) and w["logits"].shape == (3, 5, 5)
    assert not torch.allclose(w["conv1"][0], w["conv1"][1])


def outer_loss(model: MAML, xs, ys, xq, yq) -> torch.Tensor:
    logits = model(xs, ys, xq, ys.max().item() + 1)
    return F.cross_entropy(logits.flatten(0, 1), yq.flatten())


def test_maml_first_order_gradient_differs_from_second_order_which_matches_finite_differences() -> None:
    second = make_maml(inner_steps=2)
    with torch.no_grad():  # a non-zero head, so that every path carries gradient from the start
        second.logits_weight.normal_(0.0, 0.3)
    first = copy.deepcopy(second)
    first.first_order = True
    xs, ys, xq = episode(2, 3, 2, q=6)
    yq = torch.arange(3).repeat(2).repeat(2, 1)
    params = dict(second.named_parameters())
    g2 = dict(zip(params, torch.autograd.grad(outer_loss(second, xs, ys, xq, yq), list(params.values()))))
    f_params = dict(first.named_parameters())
    g1 = dict(zip(f_params, torch.autograd.grad(outer_loss(first, xs, ys, xq, yq), list(f_params.values()))))
    for name in g1:
        assert g1[name].abs().sum() > 0, f"first order: zero gradient for {name}"
        if name.startswith(("conv_weights", "logits")):
            assert not torch.allclose(g1[name], g2[name], rtol=1e-3, atol=1e-6), name

    # First order = the query-loss gradient at the adapted weights, summed over episodes.
    adapted = first.adapt(xs, ys, 3)
    loss = F.cross_entropy(cnn_forward(xq, adapted, first.bn, first.spec).flatten(0, 1), yq.flatten())
    g_adapted = dict(zip(adapted, torch.autograd.grad(loss, list(adapted.values()))))
    torch.testing.assert_close(g1["conv_weights.conv2"], g_adapted["conv2"].sum(dim=0))
    torch.testing.assert_close(g1["logits_weight"][:3], g_adapted["logits"].sum(dim=0))

    # Second order is the true gradient: compare with a central difference along a random direction.
    direction = {n: torch.randn_like(p) for n, p in params.items()}
    eps = 1e-6

    def shifted(sign: float) -> float:
        moved = copy.deepcopy(second)
        with torch.no_grad():
            for n, p in moved.named_parameters():
                p.add_(sign * eps * direction[n])
            return outer_loss(moved, xs, ys, xq, yq).item()

    numeric = (shifted(1.0) - shifted(-1.0)) / (2 * eps)
    analytic = sum((g2[n] * direction[n]).sum() for n in params).item()
    first_order = sum((g1[n] * direction[n]).sum() for n in params).item()
    assert abs(numeric - analytic) < 1e-5 * max(1.0, abs(numeric)), (numeric, analytic)
    assert abs(numeric - first_order) > 1e-3, (numeric, first_order)


def test_maml_runs_under_no_grad_and_with_frozen_parameters() -> None:
    model = make_maml(inner_steps=2)
    xs, ys, xq = episode(2, 3, 1, q=4)
    expected = model(xs, ys, xq, 3)
    with torch.no_grad():
        logits = model(xs, ys, xq, 3)
    assert not logits.requires_grad
    torch.testing.assert_close(logits, expected.detach())
    assert all(p.grad is None for p in model.parameters())
    model.requires_grad_(False)  # e.g. a frozen, loaded checkpoint
    torch.testing.assert_close(model(xs, ys, xq, 3), expected.detach())
    assert model.parameter_counts()["trainable"] == 0


def test_fresh_maml_is_relabelling_equivariant_thanks_to_its_zero_head() -> None:
    """With the zero-initialised logits layer every slot starts equal, so renaming classes permutes
    the logits' columns; a random per-slot head would break this (why the zeros were chosen)."""
    model = make_maml(inner_steps=2)
    xs, ys, xq = episode(2, 4, 1, q=5)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(model(xs, perm[ys], xq, 4)[..., perm], model(xs, ys, xq, 4))
    with torch.no_grad():
        model.logits_weight.normal_()
    assert not torch.allclose(model(xs, perm[ys], xq, 4)[..., perm], model(xs, ys, xq, 4))


def test_maml_overfits_one_tiny_episode() -> None:
    seed_everything(0)
    model = MAML(CNNSpec(channels=8), max_ways=5, inner_steps=2)
    xs, ys, xq = episode(1, 5, 1, q=10, dtype=torch.float32)
    yq = torch.arange(5).repeat(2)
    losses = adam_fit(model, xs, ys, xq, yq, 5, steps=50)  # ~0.03 after 60 steps at seed 0
    logits = model(xs, ys, xq, 5)[0]
    assert losses[0] > 1.0
    assert F.cross_entropy(logits, yq).item() < 0.1
    assert (logits.argmax(-1) == yq).all()


# ---------------------------------------------------------------- both


@pytest.mark.parametrize("kind", ["protonet", "maml"])
def test_batch_of_episodes_equals_separate_episodes(kind: str) -> None:
    model = MODELS[kind]()
    xs, ys, xq = episode(3, 4, 2, q=5)
    xs[1] *= 10.0  # a very different episode must not leak into the others (BN, gradients)
    ys = torch.stack([y[torch.randperm(8)] for y in ys])
    logits = model(xs, ys, xq, 4)
    for e in range(3):
        torch.testing.assert_close(logits[e : e + 1], model(xs[e : e + 1], ys[e : e + 1], xq[e : e + 1], 4))


@pytest.mark.parametrize("kind", ["protonet", "maml"])
def test_gradients_reach_every_parameter(kind: str) -> None:
    model = MODELS[kind](dtype=torch.float32)
    xs, ys, xq = episode(2, 5, 1, q=6, dtype=torch.float32)
    yq = torch.randint(0, 5, (2, 6))
    F.cross_entropy(model(xs, ys, xq, 5).flatten(0, 1), yq.flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


@pytest.mark.parametrize("kind", ["protonet", "maml"])
@pytest.mark.parametrize("c_img,size,channels", [(1, 28, 4), (1, 28, 64), (3, 84, 8)])
def test_shapes_for_omniglot_and_miniimagenet_images(kind: str, c_img: int, size: int, channels: int) -> None:
    model = MODELS[kind](channels=channels, dtype=torch.float32, image_channels=c_img, image_size=size)
    xs, ys, xq = episode(2, 3, 1, q=4, c=c_img, size=size, dtype=torch.float32)
    assert model(xs, ys, xq, 3).shape == (2, 4, 3)


def test_parameter_counts() -> None:
    spec_params = 4 * 1 * 9 + 3 * 4 * 4 * 9 + 4 * 2 * 4  # convs + BN scale/shift (C = 4)
    assert make_protonet().parameter_counts() == {"trainable": spec_params, "generated_per_episode": 0}
    maml = make_maml(max_ways=5)
    assert maml.parameter_counts(3) == {"trainable": spec_params + 5 * 5, "generated_per_episode": 0}


@pytest.mark.parametrize("kind", ["protonet", "maml"])
@pytest.mark.parametrize("change,match", [(dict(missing_class=True), "no labelled support sample"), *BAD_INPUTS])
def test_bad_inputs_raise_helpful_errors(kind: str, change: dict, match: str) -> None:
    model = MODELS[kind]()
    xs, ys, xq, n = broken_episode(change)
    with pytest.raises(ValueError, match=match):
        model(xs, ys, xq, n)


def test_maml_bad_settings_raise() -> None:
    xs, ys, xq = episode(1, 6, 1, q=2)
    with pytest.raises(ValueError, match="max_ways"):
        make_maml(max_ways=5)(xs, ys, xq, 6)
    with pytest.raises(ValueError, match="inner_steps"):
        MAML(inner_steps=-1)
    with pytest.raises(ValueError, match="inner_lr"):
        MAML(inner_lr=0.0)
