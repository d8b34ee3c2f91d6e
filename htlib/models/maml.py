"""Model-Agnostic Meta-Learning (Finn, Abbeel & Levine, ICML 2017) on the HT's target CNN.

MAML learns an initialisation of the whole target CNN (four convs and a logits layer); for each
episode it takes a few SGD steps on the support set's cross-entropy ("inner loop", Finn et al.,
Alg. 2) and classifies the queries with the adapted weights. The outer loss (query cross-entropy)
is back-propagated through the inner steps (second order); ``first_order=True`` drops the second
derivatives, treating the inner gradients as constants (Finn et al., Sec. 5.2, "first-order
approximation"). The HyperTransformer paper compares against MAML++ (Antoniou, Edwards & Storkey,
ICLR 2019), MAML with training tricks; this is plain MAML with the paper's CNN, so that both
methods get the same target model at the same width C.

Everything is batched over B episodes: the initial weights are expanded to (B, ...) per-episode
weights and the inner loss is the SUM of the per-episode mean losses, so the gradient of the sum
with respect to episode b's weights is exactly episode b's own gradient. The CNN runs on the
grouped layout of ``cnn.py``.

Choices (stated because plain MAML leaves them open):

* What is adapted: the four conv weights and the logits layer. BatchNorm scale/shift are learned
  in the outer loop only and NOT adapted (in Finn et al.'s released code, too, the inner update
  touches only the conv/FC weights); BN always uses the batch statistics of the set it is given, so the
  support set (inner loop) and the query set are each normalised with their own statistics.
* Logits layer: one learned row (C weights + 1 bias) per class slot, (max_ways, C+1), initialised
  to ZERO. Episodes assign classes to slots at random, so a slot carries no meaning; starting
  from zeros makes every class start with the same logit (the first inner step then moves row c
  towards class c's mean feature, like a prototype) and makes a freshly built model exactly
  relabelling-equivariant, instead of having a random per-slot head that the outer loop must first
  unlearn. The rows are still trained in the outer loop.
* Defaults inner_steps = 5, inner_lr = 0.1 are Finn et al.'s 20-way Omniglot setting. Unlabelled
  support samples (label -1) are dropped: they take no part in the loss or the BN statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from htlib.errors import ConfigError
from htlib.models.cnn import BatchNormParams, CNNSpec, cnn_forward, expand_to_episodes
from htlib.models.protonet import check_episode_inputs, conv_parameters, drop_unlabelled


class MAML(nn.Module):
    """MAML over the HT's 4-layer target CNN, with a zero-initialised per-slot logits layer.

    Args:
        spec: the target CNN (image shape, width C, activation).
        max_ways: number of class slots of the logits layer; episodes may use up to this many.
        inner_steps: SGD steps on the support loss per episode (0 = no adaptation), at training
            and at test time alike.
        inner_lr: step size of the inner SGD steps.
        first_order: if True, do not back-propagate through the inner gradients (FOMAML).

    Call: model(support_images (B, S, C_img, H, W), support_labels (B, S), query_images
    (B, Q, C_img, H, W), num_classes) -> logits (B, Q, num_classes). Adaptation needs gradients,
    so it also runs under ``torch.no_grad()`` (evaluation); only the query pass then builds no graph.
    """

    def __init__(
        self,
        spec: CNNSpec | None = None,
        max_ways: int = 20,
        inner_steps: int = 5,
        inner_lr: float = 0.1,
        first_order: bool = False,
    ) -> None:
        super().__init__()
        if max_ways < 1:
            raise ConfigError(f"max_ways must be at least 1, got {max_ways}.")
        if inner_steps < 0:
            raise ConfigError(f"inner_steps must be >= 0, got {inner_steps}.")
        if not inner_lr > 0:
            raise ConfigError(f"inner_lr must be > 0, got {inner_lr}.")
        self.spec = spec = spec or CNNSpec()
        self.max_ways = max_ways
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.first_order = first_order
        self.conv_weights = conv_parameters(spec)
        self.logits_weight = nn.Parameter(torch.zeros(max_ways, spec.logits_slice_size))  # (N_max, C+1)
        self.bn = BatchNormParams(spec)

    def initial_weights(self, num_episodes: int, num_classes: int) -> dict[str, Tensor]:
        """The learned init as per-episode views: conv (B, C_out, C_in, k, k), logits (B, N, C+1)."""
        weights = {name: expand_to_episodes(w, num_episodes) for name, w in self.conv_weights.items()}
        weights["logits"] = expand_to_episodes(self.logits_weight[:num_classes], num_episodes)
        return weights

    def support_loss(self, weights: dict[str, Tensor], images: Tensor, labels: Tensor) -> Tensor:
        """Sum over episodes of each episode's mean cross-entropy; images (B, S, ...), labels (B, S) >= 0."""
        logits = cnn_forward(images, weights, self.bn, self.spec)  # (B, S, N)
        per_sample = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
        return per_sample.view(labels.shape).mean(dim=1).sum()

    def adapt(self, support_images: Tensor, support_labels: Tensor, num_classes: int) -> dict[str, Tensor]:
        """Run the inner loop: ``inner_steps`` SGD steps from the learned init, per episode.

        Expects labelled support samples only (labels in [0, num_classes)). Returns the adapted
        weights {"conv0": (B, C_out, C_in, k, k), ..., "logits": (B, N, C+1)}. Under grad mode
        they stay differentiable with respect to the initial weights (and the BN parameters):
        through the inner gradients unless ``first_order``. Under ``torch.no_grad()`` they are
        computed with gradients enabled locally and carry no graph back to the parameters.
        """
        outer = torch.is_grad_enabled()  # does the caller back-propagate into the parameters?
        create_graph = outer and not self.first_order
        b = support_images.shape[0]
        with torch.enable_grad():
            weights = self.initial_weights(b, num_classes)
            for name, w in weights.items():
                if not (outer and w.requires_grad):  # no_grad evaluation or frozen parameters
                    weights[name] = w.detach().requires_grad_()
            names = list(weights)
            for _ in range(self.inner_steps):
                loss = self.support_loss(weights, support_images, support_labels)
                grads = torch.autograd.grad(loss, [weights[n] for n in names], create_graph=create_graph)
                weights = {n: weights[n] - self.inner_lr * g for n, g in zip(names, grads)}
        if not outer:
            weights = {n: w.detach() for n, w in weights.items()}
        return weights

    def forward(
        self, support_images: Tensor, support_labels: Tensor, query_images: Tensor, num_classes: int
    ) -> Tensor:
        """Adapt to each episode's support set, then classify its queries: returns (B, Q, num_classes)."""
        check_episode_inputs(
            self.spec, support_images, support_labels, query_images, num_classes, self.max_ways
        )
        images, labels = drop_unlabelled(support_images, support_labels)  # (B, S_l, ...)
        weights = self.adapt(images, labels, num_classes)
        return cnn_forward(query_images, weights, self.bn, self.spec)

    def parameter_counts(self, num_classes: int | None = None) -> dict[str, int]:
        """Trainable parameters (initial conv + logits weights, BN scale/shift); none generated.

        The adapted weights are per-episode, but they are computed by SGD, not generated.
        """
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"trainable": trainable, "generated_per_episode": 0}
