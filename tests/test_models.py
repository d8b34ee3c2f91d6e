"""Behavioural tests of htlib.models: the functional CNN, the encoder and the HyperTransformer.

Small configs throughout (2 CPU cores); float64 where an equality up to rounding is checked.
"""

from __future__ import annotations

import copy
import math

import pytest
from helpers import BAD_INPUTS, adam_fit, broken_episode, episode
import torch
import torch.nn.functional as F

from htlib.models import (
    CNNSpec,
    HTConfig,
    HyperTransformer,
    TransformerConfig,
    TransformerEncoder,
    cnn_block,
    cnn_forward,
)
from htlib.models.cnn import BN_EPS, BatchNormParams
from htlib.utils import seed_everything


pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.numeric]  # numeric: see pyproject.toml


def small_config(generate: str | int = "all", channels: int = 4, **kw) -> HTConfig:
    """A tiny HyperTransformer (28x28x1 images) that runs in milliseconds."""
    spec = CNNSpec(channels=channels, **{k: kw.pop(k) for k in list(kw) if k.startswith("image_")})
    base = dict(label_dim=8, local_features=4, shared_features=8, transformer_layers=2, heads=2, max_ways=6)
    base.update(kw)
    return HTConfig(cnn=spec, generate=generate, **base)


def make_model(generate: str | int = "all", dtype=torch.float64, seed: int = 0, **kw) -> HyperTransformer:
    seed_everything(seed)
    model = HyperTransformer(small_config(generate, **kw)).to(dtype)
    # Random (not identity) BatchNorm parameters so that tests also exercise them.
    with torch.no_grad():
        for p in model.bn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model




# ---------------------------------------------------------------- target CNN


def random_cnn_weights(spec: CNNSpec, b: int, n: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    w = {f"conv{l}": torch.randn(b, *spec.conv_shape(l), dtype=dtype) for l in range(spec.num_conv_layers)}
    w["logits"] = torch.randn(b, n, spec.logits_slice_size, dtype=dtype)
    return w


def test_cnn_spec_sizes() -> None:
    spec = CNNSpec(image_channels=3, image_size=84, channels=16)
    assert spec.spatial_sizes() == [84, 42, 21, 10, 5]
    assert CNNSpec().spatial_sizes() == [28, 14, 7, 3, 1]
    assert [spec.conv_slice_size(l) for l in range(4)] == [27, 144, 144, 144]
    assert spec.logits_slice_size == 17 and spec.feature_dim == 16
    assert spec.conv_shape(0) == (16, 3, 3, 3)


@pytest.mark.parametrize("c_img,size", [(1, 28), (3, 84)])
def test_cnn_forward_shapes_and_spatial_sizes(c_img: int, size: int) -> None:
    spec = CNNSpec(image_channels=c_img, image_size=size, channels=6)
    b, m, n = 2, 5, 3
    weights = random_cnn_weights(spec, b, n)
    bn = BatchNormParams(spec).double()
    x = torch.randn(b, m, c_img, size, size, dtype=torch.float64)
    sizes = []
    for l in range(spec.num_conv_layers):
        x = cnn_block(x, weights[f"conv{l}"], *bn[l], spec.activation)
        sizes.append(x.shape[-1])
        assert x.shape[:3] == (b, m, 6)
    assert sizes == spec.spatial_sizes()[1:]
    logits = cnn_forward(torch.randn(b, m, c_img, size, size, dtype=torch.float64), weights, bn, spec)
    assert logits.shape == (b, m, n)


def reference_cnn_one_episode(images, weights, bn_params, spec):
    """Plain per-episode CNN (conv -> act -> pool -> BN), written independently of htlib."""
    x = images  # (M, C_img, H, W)
    for l in range(spec.num_conv_layers):
        x = F.relu(F.conv2d(x, weights[f"conv{l}"], padding=1))
        x = F.max_pool2d(x, 2)
        scale, shift = bn_params[l]
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        x = (x - mean) / torch.sqrt(var + BN_EPS) * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    feats = x.mean(dim=(2, 3))  # (M, C)
    w = weights["logits"]
    return feats @ w[:, :-1].T + w[:, -1]


def test_grouped_cnn_equals_per_episode_loop() -> None:
    """One grouped call over B episodes == B independent plain convolutions with per-episode BN."""
    spec = CNNSpec(channels=5)
    b, m, n = 3, 7, 4
    torch.manual_seed(0)
    weights = random_cnn_weights(spec, b, n)
    bn = [(torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)) for _ in range(4)]
    images = torch.randn(b, m, 1, 28, 28, dtype=torch.float64)
    images[1] *= 10.0  # a very different episode must not leak into the others' BN statistics
    batched = cnn_forward(images, weights, bn, spec)
    for e in range(b):
        single = {k: v[e] for k, v in weights.items()}
        expected = reference_cnn_one_episode(images[e], single, bn, spec)
        torch.testing.assert_close(batched[e], expected)


# ---------------------------------------------------------------- transformer


def test_transformer_shapes_attention_and_order_equivariance() -> None:
    torch.manual_seed(0)
    enc = TransformerEncoder(TransformerConfig(width=12, heads=3, layers=2, attention_width=6)).double()
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    y, maps = enc(x, return_attention=True)
    assert y.shape == x.shape and len(maps) == 2
    assert maps[0].shape == (2, 3, 7, 7)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 3, 7, dtype=torch.float64))
    perm = torch.randperm(7)
    torch.testing.assert_close(enc(x[:, perm]), y[:, perm])  # no positional encoding
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(width=10, heads=3)


# ---------------------------------------------------------------- HyperTransformer


def test_support_order_does_not_change_generated_weights() -> None:
    model = make_model("all")
    xs, ys, _ = episode(2, 4, 2)
    ys[:, -2:] = -1  # include unlabelled tokens
    perm = torch.randperm(xs.shape[1])
    w1 = model.generate_weights(xs, ys, 4)
    w2 = model.generate_weights(xs[:, perm], ys[:, perm], 4)
    assert w1.keys() == w2.keys() == {"conv0", "conv1", "conv2", "conv3", "logits"}
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], msg=name)


def test_relabelling_with_permuted_slots_permutes_logits() -> None:
    """Class names matter only through the learned per-slot parameters.

    The label embedding of slot c (which, by default, is also the logits placeholder of slot c)
    is a fixed learned vector,
    so renaming the classes of an episode (y -> perm[y]) generally changes the generated CNN: the
    model is NOT exactly invariant to relabelling (that is why training episodes assign classes to
    slots at random, so that the model learns to treat slots alike). What holds exactly, by design,
    is equivariance: relabel y' = perm[y] AND move the label-embedding rows and logits-placeholder
    rows the same way (row perm[c] <- old row c) in a copy of the model. Then the set of sample
    tokens is unchanged, so every conv weight is identical, and logits row perm[c] equals the old
    row c, so the query logits' columns are permuted the same way.
    """
    n = 4
    model = make_model("all")
    xs, ys, xq = episode(2, n, 2, q=5)
    ys[0, 0] = -1  # the "unlabelled" slot is not permuted
    perm = torch.tensor([2, 0, 3, 1])
    full = torch.cat([perm, torch.arange(n, model.cfg.max_ways + 1)])  # identity on unused slots
    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved.label_embedding.weight[full] = model.label_embedding.weight
        holders = moved.generators["logits"].placeholders
        if holders is not None:  # untied: the logits placeholders are a separate table
            holders[full[:-1]] = model.generators["logits"].placeholders
    ys_new = torch.where(ys >= 0, perm[ys.clamp(min=0)], ys)

    w_old = model.generate_weights(xs, ys, n)
    w_new = moved.generate_weights(xs, ys_new, n)
    for l in range(4):
        torch.testing.assert_close(w_new[f"conv{l}"], w_old[f"conv{l}"])
    torch.testing.assert_close(w_new["logits"][:, perm], w_old["logits"])
    torch.testing.assert_close(moved(xs, ys_new, xq, n)[..., perm], model(xs, ys, xq, n))
    # Without moving the slots the weights do change: the model is not relabelling-invariant.
    assert not torch.allclose(model.generate_weights(xs, ys_new, n)["conv0"], w_old["conv0"])


@pytest.mark.parametrize("generate", ["all", "logits"])
def test_gradients_reach_every_parameter(generate: str) -> None:
    model = make_model(generate, dtype=torch.float32)
    xs, ys, xq = episode(2, model.cfg.max_ways, 1, q=6, dtype=torch.float32)
    ys[:, 0] = -1  # so the "unlabelled" embedding row is used too
    yq = torch.randint(0, model.cfg.max_ways, (2, 6))
    logits = model(xs, ys, xq, model.cfg.max_ways)
    F.cross_entropy(logits.flatten(0, 1), yq.flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_overfits_one_tiny_episode() -> None:
    seed_everything(0)
    model = HyperTransformer(small_config("all", channels=8, max_ways=5))
    xs, ys, _ = episode(1, 5, 1, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):  # converges in ~25 Adam steps for seeds 0-4
        loss = F.cross_entropy(model(xs, ys, xs, 5)[0], ys[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    logits = model(xs, ys, xs, 5)[0]
    assert losses[0] > 0.5  # it did have something to learn
    assert F.cross_entropy(logits, ys[0]).item() < 0.02
    assert (logits.argmax(-1) == ys[0]).all()


def test_batch_of_episodes_equals_separate_episodes() -> None:
    model = make_model("all")
    xs, ys, xq = episode(3, 4, 2, q=5)
    ys[1, :3] = -1
    weights = model.generate_weights(xs, ys, 4)
    logits = model(xs, ys, xq, 4)
    for e in range(3):
        single = model.generate_weights(xs[e : e + 1], ys[e : e + 1], 4)
        for name in weights:
            torch.testing.assert_close(weights[name][e : e + 1], single[name], msg=name)
        torch.testing.assert_close(logits[e : e + 1], model(xs[e : e + 1], ys[e : e + 1], xq[e : e + 1], 4))


def test_generate_logits_only_and_last_k() -> None:
    xs, ys, _ = episode(3, 4, 1)
    weights = make_model("logits").generate_weights(xs, ys, 4)
    for l in range(4):
        w = weights[f"conv{l}"]
        assert torch.equal(w[0], w[1]) and torch.equal(w[0], w[2])  # shared trained weights
    assert not torch.allclose(weights["logits"][0], weights["logits"][1])

    model = make_model(2)
    assert sorted(model.generators) == ["conv2", "conv3", "logits"]
    assert sorted(model.conv_weights) == ["conv0", "conv1"]
    weights = model.generate_weights(xs, ys, 4)
    for l, generated in enumerate([False, False, True, True]):
        w = weights[f"conv{l}"]
        assert torch.allclose(w[0], w[1]) != generated, f"conv{l}"
    assert make_model(0).cfg.generated_conv_layers() == []
    assert make_model(4).cfg.generated_conv_layers() == [0, 1, 2, 3]


def test_unlabelled_tokens_change_weights_and_support_size_can_vary() -> None:
    model = make_model("all")
    xs, ys, xq = episode(2, 3, 1, q=4)
    extra = torch.randn(2, 4, 1, 28, 28, dtype=torch.float64)
    w_plain = model.generate_weights(xs, ys, 3)
    xs_u = torch.cat([xs, extra], dim=1)  # (B, 3 + 4, ...)
    ys_u = torch.cat([ys, torch.full((2, 4), -1)], dim=1)
    w_semi = model.generate_weights(xs_u, ys_u, 3)
    for name in w_plain:
        assert w_semi[name].shape == w_plain[name].shape
        assert not torch.allclose(w_semi[name], w_plain[name]), name
    # 3-way 1-shot at "train", 3-way 5-shot at "test", same model.
    xs5, ys5, _ = episode(2, 3, 5)
    assert model(xs5, ys5, xq, 3).shape == (2, 4, 3)


def test_attention_maps_are_returned() -> None:
    model = make_model("all")
    xs, ys, _ = episode(2, 3, 2)
    _, maps = model.generate_weights(xs, ys, 3, return_attention=True)
    assert sorted(maps) == ["conv0", "conv1", "conv2", "conv3", "logits"]
    assert len(maps["logits"]) == 2  # transformer layers
    assert maps["logits"][0].shape == (2, 2, 3 + 6, 3 + 6)  # (B, heads, N + S, N + S)
    assert maps["conv1"][0].shape == (2, 2, 4 + 6, 4 + 6)  # C_out placeholders + S samples


@pytest.mark.parametrize("change,match", [(dict(num_classes=7), "max_ways"), *BAD_INPUTS])
def test_bad_inputs_raise_helpful_errors(change: dict, match: str) -> None:
    model = make_model("all")
    xs, ys, xq, n = broken_episode(change)
    with pytest.raises(ValueError, match=match):
        model(xs, ys, xq, n)


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="generate"):
        HTConfig(generate=5)
    with pytest.raises(ValueError, match="generate"):
        HTConfig(generate="conv")
    with pytest.raises(ValueError, match="activation"):
        CNNSpec(activation="tanh")


@pytest.mark.parametrize("channels", [4, 6, 8, 16, 32, 64])
def test_channel_widths_run(channels: int) -> None:
    seed_everything(0)
    cfg = small_config("all", channels=channels, transformer_layers=1)
    model = HyperTransformer(cfg)
    xs, ys, xq = episode(2, 3, 1, q=2, dtype=torch.float32)
    with torch.no_grad():
        weights = model.generate_weights(xs, ys, 3)
        assert model(xs, ys, xq, 3).shape == (2, 2, 3)
    assert weights["conv1"].shape == (2, channels, channels, 3, 3)
    assert weights["logits"].shape == (2, 3, channels + 1)
    # Token width = label + max(local + shared, slice size): the reference layout.
    assert model.generators["conv1"].width == 8 + max(4 + 8, 9 * channels)


def test_miniimagenet_like_config_runs() -> None:
    """84x84x3, leaky ReLU, 8 heads, attention width 0.5 x token width (reference miniImageNet)."""
    seed_everything(0)
    spec = CNNSpec(image_channels=3, image_size=84, channels=16, activation="leaky_relu")
    cfg = HTConfig(
        cnn=spec, local_features=16, shared_features=16, heads=8, max_ways=5,
        attention_width_factor=0.5, activation="leaky_relu", transformer_layers=1,
    )
    model = HyperTransformer(cfg)
    xs, ys, xq = episode(1, 5, 1, q=3, c=3, size=84, dtype=torch.float32)
    with torch.no_grad():
        assert model(xs, ys, xq, 5).shape == (1, 3, 5)
    assert model.generators["conv1"].width == 32 + 144  # label dim + slice 9*16 (> 16 + 16)
    assert model.generators["logits"].width == 32 + 32  # label dim + local + shared (> 17)


def test_parameter_counts() -> None:
    model = make_model("all")
    counts = model.parameter_counts(num_classes=3)
    assert counts["trainable"] == sum(p.numel() for p in model.parameters())
    assert counts["generated_per_episode"] == 4 * 1 * 9 + 3 * 4 * 4 * 9 + 3 * 5
    assert make_model("logits").parameter_counts(3)["generated_per_episode"] == 3 * 5


def test_local_features_from_both_convs_double_the_local_part_of_the_tokens() -> None:
    last, both = make_model("all"), make_model("all", local_features_from="both")
    assert (last.cfg.local_dim, both.cfg.local_dim) == (4, 8)
    assert both.cfg.sample_dim == last.cfg.sample_dim + 4
    for name, gen in both.generators.items():  # token widths follow: label + max(features, slice)
        assert gen.width == 8 + max(8 + 8, gen.slice_size), name
    gen = both.generators["conv1"]
    acts = torch.randn(6, 4, 14, 14, dtype=torch.float64)
    local = gen.local(acts)  # the first conv's pooled output (before its activation), then the second's
    assert local.shape == (6, 8)
    torch.testing.assert_close(local[:, :4], gen.local.conv1(acts).mean(dim=(2, 3)))
    torch.testing.assert_close(local[:, 4:], gen.local.conv2(gen.local.act(gen.local.conv1(acts))).mean(dim=(2, 3)))
    xs, ys, xq = episode(2, 3, 1, q=3)
    losses = adam_fit(both, xs, ys, xq, ys[0], 3, steps=2)  # it trains
    assert all(math.isfinite(loss) for loss in losses) and losses[1] != losses[0]
    with pytest.raises(ValueError, match="Unknown local_features_from 'first'"):
        small_config(local_features_from="first")


# ---------------------------------------------------------------- the reference's choices (fidelity study)


def test_per_layer_label_embeddings_give_each_generator_its_own_table() -> None:
    model = make_model("all", dtype=torch.float32, label_embedding_per_layer=True)
    assert model.label_embedding is None
    tables = [model.label_table(name) for name in model.generators]
    assert len({id(t) for t in tables}) == len(model.generators) == 5
    assert all(t.weight.shape == (model.cfg.max_ways + 1, 8) for t in tables)
    xs, ys, xq = episode(2, 3, 2, q=3, dtype=torch.float32)
    ys[:, 0] = -1  # class 0 keeps its second sample
    logits = model(xs, ys, xq, 3)
    F.cross_entropy(logits.flatten(0, 1), torch.randint(0, 3, (6,))).backward()
    for name in model.generators:  # every table is used, each by its own layer's tokens
        grad = model.label_table(name).weight.grad
        assert grad[:3].abs().sum(-1).min() > 0 and grad[-1].abs().sum() > 0, name  # 3 classes and "unlabelled"
        assert torch.equal(grad[3:-1], torch.zeros_like(grad[3:-1])), name  # slots this episode does not use


def test_reference_extractors_are_valid_convs_with_every_output_and_the_references_token_widths() -> None:
    model = make_model("all", feature_extractors="reference")
    sizes = model.cfg.cnn.spatial_sizes()  # [28, 14, 7, 3, 1]
    convs = {name: list(model.generators[name].local.convs) for name in model.generators}
    for layer, name in enumerate(model.generators):
        assert all(c.padding == (0, 0) for c in convs[name]), name  # 'valid'
        expected = (3, 2) if sizes[layer] >= 3 else (sizes[layer], 1)
        assert (convs[name][0].kernel_size[0], convs[name][0].stride[0]) == expected, name
    # two convs where they fit; one on the 3x3 maps (3 -> 1 leaves no room) and one 1x1 for the logits
    assert [len(c) for c in convs.values()] == [2, 2, 2, 1, 1]
    gen = model.generators["conv1"]  # 14 -> 6 -> 4: each conv's output before any activation, averaged
    acts = torch.randn(6, 4, 14, 14, dtype=torch.float64)
    first = gen.local.convs[0](acts)
    torch.testing.assert_close(gen.local(acts), torch.cat(
        [first.mean(dim=(2, 3)), gen.local.convs[1](gen.local.act(first)).mean(dim=(2, 3))], dim=-1))
    xs, ys, xq = episode(2, 3, 1, q=3)
    assert model(xs, ys, xq, 3).shape == (2, 3, 3)
    # at the reference's sizes (d = 32, 8 local, 32 shared features, C = 8) the token widths are its E
    full = HyperTransformer(HTConfig(feature_extractors="reference"))
    assert [g.width for g in full.generators.values()] == [80, 104, 104, 104, 72]
    assert [g.local.out_dim for g in full.generators.values()] == [16, 16, 16, 8, 8]
    with pytest.raises(ValueError, match="Unknown feature_extractors 'tf'"):
        small_config(feature_extractors="tf")


def test_glorot_init_zero_biases_and_query_key_still_tied() -> None:
    model = make_model("all", dtype=torch.float32, init="glorot")
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), name
            fan_out, fan_in = module.weight.shape[0], module.weight[0].numel()
            if isinstance(module, torch.nn.Conv2d):
                fan_out *= module.weight[0, 0].numel()
            assert module.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out)) + 1e-6, name  # uniform bound
    q, k, _ = model.generators["conv0"].transformer.layers[0].attn.qkv.weight.chunk(3)
    assert torch.equal(q, k)
    free = make_model("all", dtype=torch.float32, init="glorot", match_query_key_init=False)
    q, k, _ = free.generators["conv0"].transformer.layers[0].attn.qkv.weight.chunk(3)
    assert not torch.equal(q, k)
    with pytest.raises(ValueError, match="Unknown init 'he'"):
        small_config(init="he")


def test_bn_eps_reaches_the_target_cnn() -> None:
    model = make_model("all", bn_eps=1e-3)
    assert model.cfg.cnn.bn_eps == 1e-3 and make_model("all").cfg.cnn.bn_eps == BN_EPS
    x = torch.randn(2, 5, 1, 28, 28, dtype=torch.float64)
    w = torch.randn(2, 4, 1, 3, 3, dtype=torch.float64)
    scale, shift = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    # a constant channel has variance 0: its output is 0 whatever eps; a tiny-variance one shows eps
    small = 1e-4 * x
    a, b = cnn_block(small, w, scale, shift, "relu", 1e-3), cnn_block(small, w, scale, shift, "relu", 1e-5)
    assert a.abs().max() < b.abs().max()
    with pytest.raises(ValueError, match="bn_eps must be a number > 0"):
        CNNSpec(bn_eps=0)
