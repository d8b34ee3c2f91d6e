"""The graded exercises of notebooks 01-06: for each, the reference solution and a check that teaches.

Each check calls the student's function on small fixed inputs (made here from a seed, so they do
not depend on the notebook's state or on Omniglot), compares with the reference, and when the
answer is wrong says what is wrong: the shape, an invariant, a typical mistake it recognises (by
computing that mistake's output on the same inputs), or else by how much the values are off.
A check returns a sentence saying what it verified.

`EXERCISES` is the one list of exercises: the notebooks' cells, the student versions, the grader
and the teacher's page (docs/teaching.md) all follow it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from htlib.course.core import (
    CheckFailed,
    Exercise,
    as_number,
    call,
    close,
    expect_close,
    expect_tensor,
    recognise,
    same,
)
from htlib.evaluate import mean_ci95 as _htlib_mean_ci95
from htlib.models.cnn import cnn_block, linear_logits
from htlib.models.protonet import ProtoNet
from htlib.report import difference


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ================================================================ notebook 01: episodes


def choose_classes(num_classes: int, ways: int, generator: torch.Generator) -> torch.Tensor:
    """N distinct class indices in random order, drawn with `generator`; position i = slot label i."""
    return torch.rand(num_classes, generator=generator).argsort()[:ways]  # as htlib's EpisodeSampler


def _check_choose_classes(answer) -> str:
    hint = "a random permutation of all classes, cut to the first N (torch.randperm or torch.rand(...).argsort())"
    first = expect_tensor(call(answer, 50, 5, torch.Generator().manual_seed(0), hint=hint), "classes", (5,),
                          integer=True, hint=hint)
    again = call(answer, 50, 5, torch.Generator().manual_seed(0), hint=hint)
    if not same(again, first):
        raise CheckFailed("Two calls with generators seeded alike gave different classes, so an episode cannot "
                          "be drawn again from its seed.", "draw every random number from `generator` "
                          "(pass generator=generator), not from torch's global random state")
    draws = []
    for seed in range(200):
        got = call(answer, 50, 5, torch.Generator().manual_seed(seed), hint=hint)
        got = expect_tensor(got, "classes", (5,), integer=True, hint=hint)
        if int(got.min()) < 0 or int(got.max()) >= 50:
            raise CheckFailed(f"With 50 classes it returned {got.tolist()}: class indices must lie in 0..49.", hint)
        if len(set(got.tolist())) < 5:
            raise CheckFailed(f"With seed {seed} it returned {got.tolist()}: a class appears twice, but an episode "
                              f"needs N distinct classes.", "draw without replacement (torch.randint draws with "
                              "replacement; a permutation does not)")
        draws.append(got.tolist())
    if all(d == draws[0] for d in draws):
        raise CheckFailed(f"Every seed gives the same classes {draws[0]}: the episodes would all be one task.", hint)
    # In 200 draws of 5 of 50 classes a fair answer includes a given class with probability 0.1 per
    # draw, so it misses that class in all 200 with probability 0.9**200 = 7e-10, and misses any of
    # the 50 with at most 50 times that (4e-8): every class must come up. Its count is Binomial(200,
    # 0.1): mean 20, sd 4.2; above 45 (6 sd) it is not a fair draw (probability < 1e-8 per class).
    counts = torch.bincount(torch.tensor(draws).flatten(), minlength=50)
    never = (counts == 0).nonzero().flatten().tolist()
    if never:
        raise CheckFailed(f"In 200 draws of 5 classes out of 50, class{'es' if len(never) > 1 else ''} {never} never "
                          f"came up (a fair draw misses a class that often with probability 7e-10): every class "
                          f"must have the same chance.", "permute all num_classes classes, not num_classes - 1 "
                          "or a range that stops short: " + hint)
    if int(counts.max()) > 45:
        raise CheckFailed(f"In 200 draws of 5 classes out of 50, class {int(counts.argmax())} came up "
                          f"{int(counts.max())} times (a fair draw: about 20, rarely above 33): every class must "
                          f"have the same chance.", hint)
    increasing = sum(d == sorted(d) for d in draws)
    if increasing > 100:
        raise CheckFailed(f"Labels not permuted: in {increasing} of 200 draws the classes come out in increasing "
                          f"order, so a class's slot label follows its index, and a model could learn 'the "
                          f"smallest class index is slot 0' instead of reading labels off the support set.",
                          "do not sort: the order of the draw is the slot order")
    return ("N distinct classes in 0..num_classes-1, in random order, drawn again exactly from the same seed, "
            f"each of the 50 classes seen {int(counts.min())} to {int(counts.max())} times in 200 draws.")


def split_episode(picked: torch.Tensor, shots: int):
    """picked (N, K+Q, C, H, W): K+Q drawings of each of N classes, class by class.

    Returns support (N*K, C, H, W), support_labels (N*K,), query (N*Q, C, H, W), query_labels (N*Q,):
    the first K drawings of every class are its support, the rest its queries, both ordered class
    by class, and each image labelled with its class's slot (its row in `picked`).
    """
    n, m = picked.shape[:2]
    support = picked[:, :shots].reshape(n * shots, *picked.shape[2:])
    query = picked[:, shots:].reshape(n * (m - shots), *picked.shape[2:])
    return (support, torch.arange(n).repeat_interleave(shots),
            query, torch.arange(n).repeat_interleave(m - shots))


def _check_split_episode(answer) -> str:
    n, k, q = 4, 2, 3
    # each image's pixels spell its (class, drawing): value = 10 * class + drawing
    code = 10 * torch.arange(n)[:, None] + torch.arange(k + q)[None, :]  # (N, K+Q)
    picked = code[:, :, None, None, None].float().expand(n, k + q, 1, 2, 2).clone()
    hint = "split the drawings (dim 1) into support and query, then flatten (N, K) into N*K; row c's images get label c"
    got = call(answer, picked, k, hint=hint)
    if not isinstance(got, tuple) or len(got) != 4:
        raise CheckFailed("It should return a tuple of four tensors: (support, support_labels, query, query_labels).")
    support = expect_tensor(got[0], "support", (n * k, 1, 2, 2), hint=hint)
    support_labels = expect_tensor(got[1], "support_labels", (n * k,), integer=True, hint=hint)
    query = expect_tensor(got[2], "query", (n * q, 1, 2, 2), hint=hint)
    query_labels = expect_tensor(got[3], "query_labels", (n * q,), integer=True, hint=hint)
    for name, images, labels, drawings in (("support", support, support_labels, range(k)),
                                           ("query", query, query_labels, range(k, k + q))):
        seen = images[:, 0, 0, 0].long()
        cls, drawing = (seen // 10).tolist(), (seen % 10).tolist()
        if not set(drawing) <= set(drawings):
            raise CheckFailed(f"The {name} set holds drawings {sorted(set(drawing))} of their classes; it should hold "
                              f"drawings {list(drawings)} (the first K = {k} drawings are the support, the other "
                              f"Q = {q} the queries).", "support = picked[:, :shots], query = picked[:, shots:]")
        per_class = len(drawings)
        if cls != sorted(cls):
            raise CheckFailed(f"The {name} images are not ordered class by class: their classes are {cls}. "
                              f"That is the order of flattening (drawing, class) instead of (class, drawing).",
                              "reshape picked[:, ...] directly, without transposing its first two dimensions")
        if labels.tolist() != cls:
            mistake = torch.arange(n).repeat(per_class).tolist()
            said = (" That is torch.arange(N).repeat(...), which cycles through the classes, while the images "
                    "come class by class." if labels.tolist() == mistake else "")
            i = next(j for j, (a, b) in enumerate(zip(labels.tolist(), cls)) if a != b)
            raise CheckFailed(f"The {name} labels do not follow the images: {name} image {i} shows class {cls[i]} "
                              f"but is labelled {labels.tolist()[i]} (labels {labels.tolist()}, classes of the "
                              f"images {cls}).{said}", "torch.arange(N).repeat_interleave(...) repeats each "
                              "label in place")
    want = split_episode(picked, k)
    expect_close(support, want[0], "support", hint)
    expect_close(query, want[2], "query", hint)
    return ("support = the first K drawings and query = the rest, both class by class, each labelled with its "
            "class's slot (checked with N = 4, K = 2, Q = 3).")


# ================================================================ notebook 02: the HyperTransformer


def sample_tokens(label_emb: torch.Tensor, local: torch.Tensor, shared: torch.Tensor, width: int) -> torch.Tensor:
    """Tokens of the support samples: (B, S, d), (B, S, l), (B, S, s) -> (B, S, width).

    [label embedding | standardised local features | standardised shared features | zeros]; each
    feature part is standardised over its own features (a LayerNorm without parameters).
    """
    local = F.layer_norm(local, local.shape[-1:])
    shared = F.layer_norm(shared, shared.shape[-1:])
    tokens = torch.cat([label_emb, local, shared], dim=-1)  # (B, S, d + l + s)
    return F.pad(tokens, (0, width - tokens.shape[-1]))


def _check_sample_tokens(answer) -> str:
    b, s, d, l, sh, width = 2, 3, 4, 3, 5, 16
    label = _randn(b, s, d, seed=1)
    local = 3 + 2 * _randn(b, s, l, seed=2)  # off-centre and wide, so that forgetting to standardise shows
    shared = -1 + 4 * _randn(b, s, sh, seed=3)
    hint = "concatenate label | local | shared along the last dimension, then pad with zeros at the end up to width"
    got = expect_tensor(call(answer, label, local, shared, width, hint=hint), "tokens", (b, s, width), hint=(
        f"{hint}; a token is {width} wide here: {d + l + sh} values then zeros"))
    want = sample_tokens(label, local, shared, width)
    if not same(got[..., :d], label):
        raise CheckFailed(f"The first d = {d} entries of a token should be its label embedding; they are not.",
                          "concatenate the label embedding first, and pad at the end, not the front")
    if bool((got[..., d + l + sh:] != 0).any()):
        raise CheckFailed(f"Entries {d + l + sh}..{width - 1} of a token should be zeros (padding up to the width).",
                          hint)
    recognise(got, [
        (F.pad(torch.cat([label, local, shared], -1), (0, width - d - l - sh)),
         "The features are not standardised: your tokens hold the raw local and shared features.",
         "standardise each part over its own features: F.layer_norm(x, x.shape[-1:])"),
        (F.pad(torch.cat([label, F.layer_norm(shared, (sh,)), F.layer_norm(local, (l,))], -1), (0, width - d - l - sh)),
         "The local and shared features are swapped: the order is label | local | shared.", hint),
        (F.pad(torch.cat([label, F.layer_norm(torch.cat([local, shared], -1), (l + sh,))], -1),
               (0, width - d - l - sh)),
         "Local and shared features are standardised together; each part is standardised on its own.",
         "F.layer_norm(local, local.shape[-1:]) and F.layer_norm(shared, shared.shape[-1:]) separately"),
    ])
    expect_close(got, want, "tokens", "standardise each feature part over its last dimension")
    return "label embedding, standardised local and shared features, zero padding, in that order."


def kernel_from_output(out: torch.Tensor, d: int, c_out: int, c_in: int) -> torch.Tensor:
    """A conv layer's kernels from its transformer's output: (B, c_out + S, width) -> (B, c_out, c_in, 3, 3).

    The first c_out tokens are the placeholders, one per output channel; entries d .. d + 9*c_in of
    placeholder o hold that channel's kernel, input channel by input channel, each a 3x3 block.
    """
    b = out.shape[0]
    return out[:, :c_out, d:d + 9 * c_in].reshape(b, c_out, c_in, 3, 3)


def _check_kernel_from_output(answer) -> str:
    b, c_out, c_in, d, s = 2, 3, 2, 4, 5
    out = _randn(b, c_out + s, d + 9 * c_in + 2, seed=4)
    hint = "the slices sit at the placeholders (the first c_out tokens), after the first d entries; each is (c_in, 3, 3)"
    got = call(answer, out, d, c_out, c_in, hint=hint)
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (b, c_in, c_out, 3, 3):
        raise CheckFailed(f"Transposed kernel: shape {tuple(got.shape)} puts input channels first; a conv weight is "
                          f"(B, C_out, C_in, 3, 3), the layout F.conv2d expects.", hint)
    got = expect_tensor(got, "kernel", (b, c_out, c_in, 3, 3), hint=hint)
    want = kernel_from_output(out, d, c_out, c_in)
    recognise(got, [
        (out[:, :c_out, d:d + 9 * c_in].reshape(b, c_in, c_out, 3, 3).transpose(1, 2),
         "Transposed kernel: your weight[o, i] holds the slice of output channel i, input channel o. The "
         "slice of placeholder o is all of output channel o's kernel.", hint),
        (out[:, :c_out, d:d + 9 * c_in].reshape(b, c_out, 3, 3, c_in).permute(0, 1, 4, 2, 3),
         "Your kernel reads a slice as (3, 3, C_in), input channel last; it is (C_in, 3, 3): input channel by "
         "input channel, each a 3x3 block.", hint),
        (want.transpose(-1, -2), "Each 3x3 kernel is transposed (rows and columns swapped).", hint),
        (out[:, :c_out, :9 * c_in].reshape(b, c_out, c_in, 3, 3),
         f"Your kernel starts at entry 0 of the placeholders' outputs; the first d = {d} entries are the "
         f"embedding part, and the slice comes after them.", hint),
        (out[:, -c_out:, d:d + 9 * c_in].reshape(b, c_out, c_in, 3, 3),
         "Your kernel comes from the last tokens, the support samples; the weights are read at the placeholders, "
         "the first c_out tokens.", hint),
    ])
    expect_close(got, want, "kernel", hint)
    return "slices read at the placeholders after the d embedding entries, laid out as (B, C_out, C_in, 3, 3)."


def logits_layer(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The generated logits layer: features (B, M, C), weight (B, N, C+1) -> logits (B, M, N).

    Row c of an episode's weight is class c's slice: C weights, then a bias.
    """
    return linear_logits(features, weight)


def _check_logits_layer(answer) -> str:
    b, m, n, c = 2, 5, 3, 4
    features, weight = _randn(b, m, c, seed=5), _randn(b, n, c + 1, seed=6)
    hint = "split each class's row into its C weights and its bias; a batched matrix product gives (B, M, N)"
    got = call(answer, features, weight, hint=hint)
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (b, n, m):
        raise CheckFailed(f"Shape {tuple(got.shape)} is (B, N, M): one row per class; logits are (B, M, N), one row "
                          f"per image.", hint)
    got = expect_tensor(got, "logits", (b, m, n), hint=hint)
    w, bias = weight[..., :c], weight[..., c]
    recognise(got, [
        (features @ w.transpose(1, 2), "The bias is missing: the last entry of each class's slice is its bias.", hint),
        (features @ weight[..., 1:].transpose(1, 2) + weight[..., 0].unsqueeze(1),
         "You take the bias from the first entry of a slice; it is the last (C weights, then the bias).", hint),
        (features @ w.transpose(1, 2) + bias[:, :1, None], "Every class gets the first class's bias.", hint),
    ])
    expect_close(got, logits_layer(features, weight), "logits", hint)
    return "logits = features . class weights + class bias, shape (B, M, N)."


def generate_layers(model, images: torch.Tensor, label_emb: torch.Tensor, shared: torch.Tensor,
                    n_classes: int) -> dict[str, torch.Tensor]:
    """The HT's layer-by-layer loop for a batch of episodes: {"conv0": (B, C, C_img, 3, 3), ...,
    "logits": (B, n_classes, C + 1)}.

    images (B, S, C_img, H, W) is the support set; label_emb (B, S, d) and shared (B, S, s) are its
    label embeddings and shared features, the same for every layer. A generated layer's weights come
    from its generator, which reads the support set as it arrives at that layer; a layer the HT does
    not generate is an ordinary trained weight, the same for every episode. The support set then
    goes through the layer (conv, activation, pooling, BatchNorm: cnn_block) before the next one.
    The logits layer comes last, its placeholders the label embeddings of the episode's classes.
    """
    spec, weights, acts = model.cfg.cnn, {}, images
    for layer in range(spec.num_conv_layers):
        name = f"conv{layer}"
        if name in model.generators:
            slices, _ = model.generators[name](acts, label_emb, shared, spec.out_channels(layer), return_attention=False)
            weights[name] = slices.reshape(images.shape[0], *spec.conv_shape(layer))
        else:
            weights[name] = model.conv_weights[name].expand(images.shape[0], *model.conv_weights[name].shape)
        scale, shift = model.bn[layer]
        acts = cnn_block(acts, weights[name], scale, shift, spec.activation, spec.bn_eps)
    weights["logits"], _ = model.generators["logits"](acts, label_emb, shared, n_classes,
                                                      model.label_embedding.weight[:n_classes], return_attention=False)
    return weights


def _loop_inputs(method: str):
    """A small untrained HT of `method` and a support set of 2 episodes, 3-way 2-shot, from fixed seeds."""
    from htlib.config import TrainConfig
    from htlib.methods import build_model

    torch.manual_seed(7)
    model = build_model(TrainConfig(dataset="synthetic", method=method, ways=3, channels=4,
                                    model_options={"transformer_layers": 1}), (1, 28, 28)).eval()
    images, labels = _randn(2, 6, 1, 28, 28, seed=8), torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 0, 0, 1, 1]])
    with torch.no_grad():
        shared = model.shared(images.flatten(0, 1)).reshape(2, 6, -1)
        return model, images, model.label_embedding(labels), F.layer_norm(shared, shared.shape[-1:]), 3


def _check_generate_layers(answer) -> str:
    hint = ("per conv layer: weights from its generator (or the trained weight), then acts = cnn_block(acts, weight, "
            "*model.bn[layer], ...) before the next layer; the logits layer last")
    for method in ("ht-all", "ht-2"):
        model, images, label_emb, shared, n = _loop_inputs(method)
        with torch.no_grad():
            got = call(answer, model, images, label_emb, shared, n, hint=hint)
            want = generate_layers(model, images, label_emb, shared, n)
        if not isinstance(got, dict) or set(got) != set(want):
            raise CheckFailed(f"Return a dict with one entry per layer, {sorted(want)}; got "
                              f"{sorted(got) if isinstance(got, dict) else type(got).__name__}.", hint)
        for name in want:  # the first layer that differs says where the loop goes wrong
            expect_tensor(got[name], f"weights['{name}']", tuple(want[name].shape), hint=hint)
            if same(got[name], want[name]):
                continue
            if name == "logits":
                raise CheckFailed(f"({method}) Every conv layer is right but the logits layer is not: it is generated "
                                  f"from the support set after the LAST conv layer, with the label embeddings of the "
                                  f"episode's {n} classes as its placeholders (model.label_embedding.weight[:n]).", hint)
            layer = int(name.removeprefix("conv"))
            if layer == 0:
                raise CheckFailed(f"({method}) conv0 differs already: its generator reads the support images "
                                  f"themselves, with out_channels(0) slots, and its slices are reshaped to "
                                  f"conv_shape(0).", hint)
            raise CheckFailed(f"({method}) conv{layer - 1} is right but conv{layer} is not: conv{layer}'s tokens must "
                              f"come from the support set pushed through conv{layer - 1}, with the weights just "
                              f"written and its BatchNorm, cnn_block(acts, weight, scale, shift, activation, "
                              f"bn_eps); is `acts` updated inside the loop, after each layer?", hint)
    return "the weights of every layer equal the model's own loop, for an HT writing all layers and one writing two."


# ================================================================ notebook 03: all layers or only the logits


def weights_written(channels: int, ways: int, generate: str | int, layers: int = 4, image_channels: int = 1) -> int:
    """How many CNN weights the HT writes per episode: every generated 3x3 conv kernel
    (generate="all": all conv layers; "logits": none; an int g: the last g) plus the logits layer's
    N x (C + 1) weights (C weights and a bias per class). Conv layer 0 reads `image_channels`
    channels, the others C; every conv layer has C outputs."""
    if generate == "all":
        generated = range(layers)
    elif generate == "logits":
        generated = range(0)
    else:
        generated = range(layers - int(generate), layers)
    conv = sum(9 * (image_channels if layer == 0 else channels) * channels for layer in generated)
    return conv + ways * (channels + 1)


def _check_weights_written(answer) -> str:
    hint = "3 x 3 x C_in x C_out weights per generated conv layer, plus the logits layer's N rows of C + 1"
    cases = [(c, n, g) for g in ("all", "logits", 2) for c in (4, 8, 32) for n in (5, 20)]
    for c, n, g in cases:
        raw = call(answer, c, n, g, hint=hint)
        got = as_number(raw, "weights_written(...)")
        want = weights_written(c, n, g)
        if got == want:
            continue
        off = got - want
        said = {n: f"off by exactly N = {n}: is the bias of each class's logits row missing?",
                -n: f"off by exactly N = {n}: is the bias of each class's logits row missing?",
                -n * (c + 1): "off by exactly N x (C + 1): the logits layer is always generated, count it too.",
                9 * c * (c - 1): "off by 9 x C x (C - 1): conv0 reads the image's 1 channel, not C channels."}
        raise CheckFailed(f"For C = {c}, N = {n}, generate = {g!r} it returns {got:g}; the HT writes {want} weights "
                          f"per episode ({said.get(off, f'off by {off:+g}')})", hint)
    return (f"right in all {len(cases)} cases of C in (4, 8, 32), N in (5, 20) and generate in ('all', 'logits', 2); "
            f"for example {weights_written(8, 20, 'all')} weights for C = 8, N = 20, all layers.")


def gap_ci(acc_a: float, ci_a: float, acc_b: float, ci_b: float) -> tuple[float, float, str]:
    """Accuracy a minus accuracy b, the 95% CI half-width of that gap (independent estimates), and a
    verdict: "better" / "worse" when the CI excludes 0, else "no clear difference"."""
    gap, ci = acc_a - acc_b, math.hypot(ci_a, ci_b)
    return gap, ci, "better" if gap - ci > 0 else "worse" if gap + ci < 0 else "no clear difference"


def _check_gap_ci(answer) -> str:
    hint = "variances of independent estimates add, and a CI half-width is proportional to a standard deviation"
    cases = [(0.60, 0.02, 0.50, 0.03), (0.50, 0.03, 0.52, 0.04), (0.30, 0.01, 0.50, 0.01), (0.41, 0.03, 0.40, 0.001)]
    for a, ca, b, cb in cases:
        got = call(answer, a, ca, b, cb, hint=hint)
        if not isinstance(got, tuple) or len(got) != 3:
            raise CheckFailed("It should return a tuple (gap, ci95, verdict).", hint)
        gap, ci, verdict = as_number(got[0], "gap"), as_number(got[1], "ci95"), got[2]
        want = difference(_row(a, ca), _row(b, cb))
        case = f"a = {a} ± {ca}, b = {b} ± {cb}"
        if not close(gap, want["gap"]):
            raise CheckFailed(f"For {case} the gap is {gap:.4g}; it should be a - b = {want['gap']:.4g}.", hint)
        if not close(ci, want["ci95"]):
            said = (" You added the half-widths: that is too wide, because independent errors partly cancel."
                    if close(ci, ca + cb) else "")
            raise CheckFailed(f"For {case} the CI half-width is {ci:.4g}; it should be {want['ci95']:.4g} "
                              f"(off by {ci - want['ci95']:+.4g}).{said}", hint)
        if verdict != want["verdict"]:
            raise CheckFailed(f"For {case} (gap {gap:+.3f} ± {ci:.3f}) the verdict is {verdict!r}; it should be "
                              f"{want['verdict']!r}.", "'better' only when gap - ci > 0, 'worse' only when "
                              "gap + ci < 0: a CI that contains 0 is 'no clear difference'")
    return f"gap, CI and verdict right in {len(cases)} cases (better, worse and no clear difference among them)."


def _row(acc: float, ci: float):
    import pandas as pd

    return pd.Series({"test_accuracy": acc, "ci95": ci})


# ================================================================ notebook 04: semi-supervised


def label_embeddings(embedding: nn.Embedding, labels: torch.Tensor) -> torch.Tensor:
    """The label part of each support token: labels (B, S) -> (B, S, d).

    Class slot c uses row c of `embedding`; an unlabelled sample (label -1) uses the last row,
    the one "unlabelled" embedding shared by every such sample (row max_ways = num_embeddings - 1).
    """
    return embedding(torch.where(labels < 0, embedding.num_embeddings - 1, labels))


def _check_label_embeddings(answer) -> str:
    embedding = nn.Embedding.from_pretrained(_randn(21, 4, seed=7))  # max_ways = 20, d = 4
    labels = torch.tensor([[0, 1, 2, 3, 4, -1, -1, -1], [4, 3, 2, 1, 0, -1, -1, -1]])
    hint = "turn label -1 into the last row's index (embedding.num_embeddings - 1) before the lookup"
    try:
        raw = answer(embedding, labels)
    except IndexError as e:  # embedding(-1): the typical mistake, worth its own explanation
        raise CheckFailed(f"Calling it raised IndexError ({e}): label -1 is not a row of the embedding. Forgetting "
                          f"the unlabelled slot: unlabelled samples (label -1) use the last row, max_ways.", hint) from e
    except Exception:  # noqa: BLE001  (any other error: `call` reports it, or 'not done yet')
        raw = call(answer, embedding, labels, hint=hint)  # reports 'not done yet' or the error
    got = expect_tensor(raw, "label embeddings", (2, 8, 4), hint=hint)
    table = embedding.weight.detach()
    if not same(got[labels >= 0], table[labels[labels >= 0]]):
        raise CheckFailed("The labelled samples do not get the row of their class slot.", hint)
    unlabelled = got[labels < 0]
    for row, said in ((0, "class 0's embedding (were the labels clamped at 0?)"),
                      (5, "row 5, one past this episode's 5 classes: in a 6-way episode that is class 5's")):
        if same(unlabelled, table[row].expand_as(unlabelled)):
            raise CheckFailed(f"The unlabelled samples get {said}. They must share the one 'unlabelled' row, the last "
                              f"(max_ways = 20), which no class uses.", hint)
    expect_close(got, label_embeddings(embedding, labels).detach(), "label embeddings",
                 "unlabelled samples use the last row, max_ways = embedding.num_embeddings - 1")
    return "class slot c -> row c, every unlabelled sample -> the shared last row (max_ways)."


def soft_kmeans_step(embeddings: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """One soft k-means refinement (Ren et al. 2018): embeddings (S, C), labels (S,) with -1 for an
    unlabelled sample, prototypes (N, C) -> refined prototypes (N, C).

    An unlabelled embedding h gets weights w_c = softmax over the classes c of -||h - p_c||^2; a
    labelled one weighs 1 on its own class. Each new prototype is the weighted mean of all embeddings.
    """
    return ProtoNet.refine(embeddings[None], labels[None], prototypes[None])[0]


def _check_soft_kmeans_step(answer) -> str:
    n, c = 3, 4
    centres = 2 * _randn(n, c, seed=8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, -1, -1, -1, -1, -1])
    truth = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 2, 1])
    emb = centres[truth] + 0.7 * _randn(len(labels), c, seed=9)
    start = ProtoNet.prototypes(emb[None], labels[None], n)[0]
    hint = "write down the shapes: soft assignments (S_u, N) with rows summing to 1; labelled samples weigh 1"
    got = expect_tensor(call(answer, emb, labels, start, hint=hint), "prototypes", (n, c), hint=hint)

    lab, unl = emb[labels >= 0], emb[labels < 0]
    hard = F.one_hot(labels[labels >= 0], n).float()  # (S_l, N)
    sq = (unl[:, None] - start[None]).pow(2).sum(-1)  # (S_u, N)

    def refined(soft, unlabelled_in_denominator=True):  # the step with a chosen (possibly wrong) part
        den = hard.sum(0) + (soft.sum(0) if unlabelled_in_denominator else 0)
        return (hard.T @ lab + soft.T @ unl) / den[:, None]

    recognise(got, [
        (start, "Your prototypes are the labelled means: the unlabelled samples did not move them.", hint),
        (refined((-sq).softmax(dim=0)),
         "Softmax over the wrong axis: each unlabelled sample's weights must sum to 1 over the classes (dim=1 of "
         "(samples, classes)); yours sum to 1 over the samples.", hint),
        (refined(sq.softmax(dim=1)),
         "Wrong sign: your assignments favour the farthest prototype; use softmax of MINUS the squared distance.",
         hint),
        (refined((-sq.sqrt()).softmax(dim=1)),
         "Your assignments use the distance; the soft k-means step uses the squared distance.", hint),
        (refined((-sq).softmax(dim=1), unlabelled_in_denominator=False),
         "The weighted mean divides by the labelled counts only; divide by the sum of all weights, soft ones "
         "included.", hint),
        ((hard.T @ lab + (-sq).softmax(dim=1).T @ unl) / (hard.sum(0) + 1)[:, None],
         "Each class's denominator should add its soft weights, not 1.", hint),
    ])
    expect_close(got, soft_kmeans_step(emb, labels, start), "prototypes", hint)
    return "soft assignments over the classes from minus squared distances, weighted means with labelled weight 1."


# ================================================================ notebook 05: results against the paper


def mean_ci95(per_episode: torch.Tensor) -> tuple[float, float]:
    """Mean accuracy over episodes and the half-width of its 95% confidence interval:
    1.96 standard errors, with the sample standard deviation (n - 1) of the per-episode accuracies."""
    return _htlib_mean_ci95(per_episode)


def _check_mean_ci95(answer) -> str:
    hint = "the standard error of a mean of n values is their standard deviation (n - 1) over √n; 95% is 1.96 of them"
    for n, seed in ((50, 10), (5, 11)):
        accs = (0.6 + 0.15 * _randn(n, seed=seed)).clamp(0, 1)
        got = call(answer, accs, hint=hint)
        if not isinstance(got, tuple) or len(got) != 2:
            raise CheckFailed("It should return a tuple (mean, half_width).", hint)
        mean, half = as_number(got[0], "mean"), as_number(got[1], "half_width")
        want_mean, want_half = _htlib_mean_ci95(accs)
        if not close(mean, want_mean):
            raise CheckFailed(f"For {n} episodes the mean is {mean:.5f}; it should be {want_mean:.5f}.", hint)
        if close(half, want_half, rel=1e-5):
            continue
        ratio = half / want_half
        said = next((text for value, text in (
            (math.sqrt(n), f"√n = {math.sqrt(n):.2f} times too wide: that is the spread of single episodes; "
                           "the mean's standard error divides it by √n"),
            (math.sqrt((n - 1) / n), "too narrow by √((n-1)/n): use the sample standard deviation (divide by "
                                     "n - 1)"),
            (2 / 1.96, "2 / 1.96 times too wide: the 95% normal quantile is 1.96"),
            (1 / 1.96, "1.96 times too narrow: multiply the standard error by 1.96")) if close(ratio, value, 1e-4)),
            f"{ratio:.3f} times the right width")
        raise CheckFailed(f"For {n} episodes the half-width is {half:.5f}; it should be {want_half:.5f}: {said}.",
                          hint)
    return "mean and 1.96 standard errors (sample standard deviation), on 50 episodes and on 5."


# ================================================================ notebook 06: training the HT


def paired_gap(arm, baseline) -> tuple[float, float]:
    """An arm's test accuracy minus the baseline's, on the seeds both were trained with, and the
    95% CI half-width of that gap. `arm` and `baseline` are tables with columns seed, test_accuracy
    and ci95 (one row per seed). Each side's mean over the shared seeds has a CI of
    sqrt(sum ci^2) / n (independent runs); the gap's combines the two in quadrature."""
    seeds = sorted(set(arm["seed"]) & set(baseline["seed"]))
    a, b = arm.set_index("seed").loc[seeds], baseline.set_index("seed").loc[seeds]
    ci = math.hypot(math.sqrt((a["ci95"] ** 2).sum()) / len(seeds), math.sqrt((b["ci95"] ** 2).sum()) / len(seeds))
    return float(a["test_accuracy"].mean() - b["test_accuracy"].mean()), ci


def _check_paired_gap(answer) -> str:
    import pandas as pd

    def table(rows):
        return pd.DataFrame(rows, columns=["seed", "test_accuracy", "ci95"])

    hint = ("keep only the seeds both tables have; the mean of n independent accuracies has a CI of "
            "sqrt(sum of ci^2) / n; independent CIs of a difference combine as sqrt(ci_a^2 + ci_b^2)")
    base = table([(0, 0.80, 0.006), (1, 0.84, 0.005), (2, 0.70, 0.008)])  # seed 2: a third baseline seed
    cases = {"one shared seed": (table([(1, 0.86, 0.005)]), base),
             "two shared seeds": (table([(0, 0.83, 0.006), (1, 0.85, 0.004), (5, 0.99, 0.001)]), base)}
    for name, (arm, baseline) in cases.items():
        got = call(answer, arm, baseline, hint=hint)
        if not isinstance(got, tuple) or len(got) != 2:
            raise CheckFailed("It should return a tuple (gap, ci95).", hint)
        gap, ci = as_number(got[0], "gap"), as_number(got[1], "ci95")
        want_gap, want_ci = paired_gap(arm, baseline)
        if not close(gap, want_gap):
            every = arm["test_accuracy"].mean() - baseline["test_accuracy"].mean()
            said = (" That is the mean over every seed of each table: compare on the seeds both have, since a "
                    "seed decides the episodes and the initial weights." if close(gap, every) else
                    " That is the baseline minus the arm: the gap is the arm minus the baseline."
                    if close(gap, -want_gap) else "")
            raise CheckFailed(f"With {name} the gap is {gap:.4g}; it should be {want_gap:.4g}.{said}", hint)
        if not close(ci, want_ci):
            shared = sorted(set(arm["seed"]) & set(baseline["seed"]))
            a, b = (t.set_index("seed").loc[shared, "ci95"] for t in (arm, baseline))
            said = (" You averaged the CIs: the mean of n independent runs is surer than each, by 1/sqrt(n)."
                    if close(ci, math.hypot(a.mean(), b.mean())) else
                    " You added the two sides' CIs: independent errors combine in quadrature."
                    if close(ci, math.sqrt((a ** 2).sum()) / len(shared) + math.sqrt((b ** 2).sum()) / len(shared))
                    else "")
            raise CheckFailed(f"With {name} the CI half-width is {ci:.4g}; it should be {want_ci:.4g}.{said}", hint)
    return "gap and CI right on one and on two shared seeds, with seeds only one side has left out."


# ================================================================ the list


EXERCISES: dict[str, Exercise] = {ex.key: ex for ex in [
    Exercise("choose_classes", "01", "the classes of an episode, in random slot order", 2, 10, choose_classes,
             _check_choose_classes, "try it: choose_classes(50, 5, torch.Generator().manual_seed(0))"),
    Exercise("split_episode", "01", "support / query split with slot labels", 2, 15, split_episode,
             _check_split_episode, "print the shapes of picked[:, :shots] and of what you return"),
    Exercise("sample_tokens", "02", "the token of a support sample", 2, 15, sample_tokens,
             _check_sample_tokens, "print the shape of each part before concatenating"),
    Exercise("kernel_from_output", "02", "cutting the transformer's output into a kernel tensor", 2, 15,
             kernel_from_output, _check_kernel_from_output, "print out.shape and the shape you reshape to"),
    Exercise("logits_layer", "02", "the generated logits layer", 1, 10, logits_layer, _check_logits_layer,
             "print the shapes of features and weight[..., :-1]"),
    Exercise("generate_layers", "02", "the layer-by-layer generation loop, the HT's central idea", 3, 25,
             generate_layers, _check_generate_layers, "print the shape of acts after each layer"),
    Exercise("weights_written", "03", "how many weights the HT writes per episode", 2, 10, weights_written,
             _check_weights_written, "work out C = 8, N = 20 by hand first"),
    Exercise("gap_ci", "03", "the gap between two methods, with its 95% CI", 2, 10, gap_ci, _check_gap_ci,
             "return three values: two numbers and a string"),
    Exercise("label_embeddings", "04", "the 'unlabelled' token", 2, 10, label_embeddings, _check_label_embeddings,
             "print embedding.num_embeddings and labels"),
    Exercise("soft_kmeans_step", "04", "one soft k-means refinement step", 3, 20, soft_kmeans_step,
             _check_soft_kmeans_step, "write down the shapes: (S_u, N) assignments, (N, C) prototypes"),
    Exercise("mean_ci95", "05", "a 95% confidence interval over episodes", 2, 10, mean_ci95, _check_mean_ci95,
             "per_episode is a 1-d tensor of accuracies, one per episode"),
    Exercise("paired_gap", "06", "an arm against the baseline, on the seeds both have", 2, 15, paired_gap,
             _check_paired_gap, "print the seeds of each table first"),
]}


def exercises_of(notebook: str) -> list[Exercise]:
    """The exercises of notebook "01".."06", in their order in the notebook."""
    return [ex for ex in EXERCISES.values() if ex.notebook == notebook]


NOTEBOOKS = sorted({ex.notebook for ex in EXERCISES.values()})
