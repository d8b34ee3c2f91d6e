"""Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017) on the HT's target CNN.

A baseline that learns ONE fixed embedding for all tasks, the alternative the HyperTransformer
paper compares against at equal CNN width C: the embedding is the target CNN's four conv blocks
with ordinary trained weights, each class is represented by the mean of its support embeddings
(its "prototype", Snell et al., Eq. 1), and a query's logit for class c is minus its squared
Euclidean distance to prototype c (Snell et al., Eq. 2; squared Euclidean is the distance they
found to work best).

Same call signature as :class:`~htlib.models.hypertransformer.HyperTransformer`, so the shared
training loop and evaluation run it unchanged. BatchNorm follows the HT's target CNN: it always
uses the statistics of the batch it is given, so the support and the query set of each episode are
normalised with their own statistics (``cnn.py``). A batch of B episodes runs at once on the
grouped-convolution layout; there is no Python loop over episodes.

Unlabelled support samples (label -1) are dropped before anything is computed, so they affect
neither the prototypes nor the support set's BatchNorm statistics, unless ``soft_kmeans_steps``
> 0: then the prototypes are refined with them by soft k-means (Ren et al., ICLR 2018, "Meta-
Learning for Semi-Supervised Few-Shot Classification", Eq. 3-4), the semi-supervised baseline
of notebook 04. Each step gives every unlabelled embedding a soft assignment to the classes (a
softmax over minus squared distances to the current prototypes) and recomputes each prototype as
the weighted mean of its labelled samples (weight 1) and the unlabelled ones (their assignment).
Labelled and unlabelled samples are then embedded together, so BatchNorm uses the statistics of
the whole support set. The refinement has no parameters: a network trained without unlabelled
samples can use it at test time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from htlib.errors import ConfigError
from htlib.models.checks import check_query, check_support, value_checks_on
from htlib.models.cnn import BatchNormParams, CNNSpec, cnn_features, expand_to_episodes


def conv_parameters(spec: CNNSpec) -> nn.ParameterDict:
    """Trained (not generated) conv weights "conv0".."conv{L-1}", each (C_out, C_in, k, k).

    Kaiming-normal for ReLU, as the HT's non-generated conv layers; convs have no bias (BN follows).
    """
    params = nn.ParameterDict()
    for layer in range(spec.num_conv_layers):
        w = torch.empty(spec.conv_shape(layer))
        nn.init.kaiming_normal_(w, nonlinearity="relu")
        params[f"conv{layer}"] = nn.Parameter(w)
    return params


def check_episode_inputs(
    spec: CNNSpec,
    support_images: Tensor,
    support_labels: Tensor,
    query_images: Tensor,
    num_classes: int,
    max_ways: int | None = None,
) -> None:
    """Raise a ValueError that says what is wrong with an episode batch, else return None.

    Checks shapes against ``spec``, the label dtype and range ([0, num_classes) or -1), that
    num_classes lies in [1, max_ways], and that every class of every episode has at least one
    labelled support sample (a prototype, or an adapted logits row, needs one).
    """
    check_support(spec, support_images, support_labels, num_classes, max_ways)
    check_query(support_images, query_images)
    if not value_checks_on():
        return
    counts = class_counts(support_labels, num_classes)  # (B, N)
    if (counts == 0).any():
        episode, cls = (counts == 0).nonzero()[0].tolist()
        raise ValueError(
            f"class {cls} of episode {episode} has no labelled support sample; every class in "
            f"[0, {num_classes - 1}] needs at least one."
        )


def one_hot_labelled(labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(B, S) labels, -1 = unlabelled -> (B, S, N) one-hot, all-zero rows for unlabelled samples."""
    return F.one_hot(labels.clamp(min=0), num_classes).to(dtype) * (labels >= 0).unsqueeze(-1).to(dtype)


def class_counts(labels: Tensor, num_classes: int) -> Tensor:
    """(B, S) labels -> (B, N) number of labelled support samples of each class."""
    return one_hot_labelled(labels, num_classes, torch.int64).sum(dim=1)


def drop_unlabelled(images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Keep only the labelled support samples, in their order: (B, S, ...) -> (B, S_l, ...).

    Episodes of one batch must then hold the same number S_l of labelled samples (the episode
    sampler always gives N*K); otherwise they cannot stay one tensor, and a ValueError says so.
    """
    keep = labels >= 0  # (B, S)
    if bool(keep.all()):
        return images, labels
    per_episode = keep.sum(dim=1)
    if bool((per_episode != per_episode[0]).any()):
        raise ValueError(
            f"every episode of a batch must have the same number of labelled support samples to "
            f"drop the unlabelled ones, got {per_episode.tolist()}."
        )
    b, s_l = labels.shape[0], int(per_episode[0])
    # Boolean indexing walks (B, S) in row-major order, so each episode's samples stay together.
    return images[keep].reshape(b, s_l, *images.shape[2:]), labels[keep].reshape(b, s_l)


class ProtoNet(nn.Module):
    """Prototypical Network whose embedding is the HT's 4-layer target CNN (without its logits layer).

    Call: model(support_images (B, S, C_img, H, W), support_labels (B, S), query_images
    (B, Q, C_img, H, W), num_classes) -> logits (B, Q, num_classes) = -||f(query) - prototype_c||^2.
    It has no per-class parameters, so any number of classes works and renaming the classes of an
    episode permutes the logits' columns exactly.
    """

    def __init__(self, spec: CNNSpec | None = None, soft_kmeans_steps: int = 0) -> None:
        super().__init__()
        if soft_kmeans_steps < 0:
            raise ConfigError(f"soft_kmeans_steps must be >= 0, got {soft_kmeans_steps}")
        self.spec = spec or CNNSpec()
        self.soft_kmeans_steps = soft_kmeans_steps
        self.conv_weights = conv_parameters(self.spec)
        self.bn = BatchNormParams(self.spec)

    def embed(self, images: Tensor) -> Tensor:
        """Features before the logits layer: (B, M, C_img, H, W) -> (B, M, C).

        BN statistics are those of the M images of each episode (per episode, per channel).
        """
        b = images.shape[0]
        weights = {name: expand_to_episodes(w, b) for name, w in self.conv_weights.items()}
        return cnn_features(images, weights, self.bn, self.spec)

    @staticmethod
    def prototypes(support_emb: Tensor, support_labels: Tensor, num_classes: int) -> Tensor:
        """Per-class mean of the labelled support embeddings, as one matmul (Snell et al., Eq. 1).

        support_emb (B, S, C), support_labels (B, S) with -1 ignored -> (B, N, C).
        """
        onehot = one_hot_labelled(support_labels, num_classes, support_emb.dtype)  # (B, S, N)
        sums = onehot.transpose(1, 2) @ support_emb  # (B, N, C)
        return sums / onehot.sum(dim=1).clamp(min=1).unsqueeze(-1)

    @staticmethod
    def logits(query_emb: Tensor, prototypes: Tensor) -> Tensor:
        """Minus squared Euclidean distances: query_emb (B, Q, C), prototypes (B, N, C) -> (B, Q, N).

        Computed from explicit differences (B*Q*N*C values, small here) rather than the
        |q|^2 - 2 q.p + |p|^2 expansion, so that a query equal to a prototype gets exactly 0.
        """
        diff = query_emb.unsqueeze(2) - prototypes.unsqueeze(1)  # (B, Q, N, C)
        return -diff.pow(2).sum(dim=-1)

    def forward(
        self, support_images: Tensor, support_labels: Tensor, query_images: Tensor, num_classes: int
    ) -> Tensor:
        """Classify each episode's queries by their nearest prototype: returns (B, Q, num_classes)."""
        check_episode_inputs(self.spec, support_images, support_labels, query_images, num_classes)
        if self.soft_kmeans_steps and bool((support_labels < 0).any()):
            embedded = self.embed(support_images)  # labelled and unlabelled together (B, S, C)
            protos = self.prototypes(embedded, support_labels, num_classes)
            for _ in range(self.soft_kmeans_steps):
                protos = self.refine(embedded, support_labels, protos)
        else:
            images, labels = drop_unlabelled(support_images, support_labels)  # (B, S_l, ...)
            protos = self.prototypes(self.embed(images), labels, num_classes)  # (B, N, C)
        return self.logits(self.embed(query_images), protos)

    @classmethod
    def refine(cls, support_emb: Tensor, support_labels: Tensor, prototypes: Tensor) -> Tensor:
        """One soft k-means step (Ren et al. 2018, Eq. 4): (B, S, C), (B, S), (B, N, C) -> (B, N, C).

        Labelled samples keep weight 1 on their own class; an unlabelled sample (label -1)
        weighs softmax_c(-||h - p_c||^2) on class c.
        """
        num_classes = prototypes.shape[1]
        hard = one_hot_labelled(support_labels, num_classes, support_emb.dtype)  # (B, S, N), 0 rows if unlabelled
        soft = cls.logits(support_emb, prototypes).softmax(dim=-1)  # (B, S, N)
        weights = torch.where((support_labels >= 0).unsqueeze(-1), hard, soft)
        return (weights.transpose(1, 2) @ support_emb) / weights.sum(dim=1).unsqueeze(-1)

    def parameter_counts(self, num_classes: int | None = None) -> dict[str, int]:
        """Trainable parameters (conv weights + BN scale/shift); nothing is generated per episode."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"trainable": trainable, "generated_per_episode": 0}
