"""N-way K-shot episodes, sampled in batches.

An episode (Vinyals et al., 2016) is a tiny classification task: pick N classes of the
split, give them the slot labels 0..N-1 in a random order, and draw K labelled
*support* images and Q *query* images per class. The model sees the support set and is
scored on the queries. For the semi-supervised setting (paper Sec. 4.3) each class also
contributes U *unlabelled* support images, and optionally D *distractor* classes outside
the episode contribute U unlabelled images each.

Everything is sampled for a whole batch of B episodes at once with tensor ops, so
sampling is never the bottleneck of training.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from htlib.data.base import ClassImages, to_float
from htlib.errors import ConfigError


@dataclass
class Episode:
    """A batch of B episodes; images are float32 in [-1, 1].

    Support and query images are grouped by class slot: sample i of the support set has
    label i // K. Order does not matter to the models (they are permutation invariant).
    """

    support: torch.Tensor  # (B, N*K, C, H, W)
    support_labels: torch.Tensor  # (B, N*K) in 0..N-1
    query: torch.Tensor  # (B, N*Q, C, H, W)
    query_labels: torch.Tensor  # (B, N*Q)
    unlabelled: torch.Tensor  # (B, (N+D)*U, C, H, W)
    unlabelled_labels: torch.Tensor  # (B, (N+D)*U) true slot, -1 for distractors; never fed to models
    classes: torch.Tensor  # (B, N) index (in the split) of the class in each slot
    ways: int

    def to(self, device: torch.device | str) -> "Episode":
        return Episode(**{f.name: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
                          for f in fields(self) for v in [getattr(self, f.name)]})

    def select(self, episodes: slice) -> "Episode":
        """The episodes `episodes` of the batch (e.g. slice(0, 1): the first one alone)."""
        return Episode(**{f.name: (v[episodes] if torch.is_tensor(v) else v)
                          for f in fields(self) for v in [getattr(self, f.name)]})

    @property
    def batch_size(self) -> int:
        return self.support.shape[0]

    def support_with_unlabelled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Support images followed by unlabelled ones, labels -1 marking the unlabelled."""
        hidden = torch.full_like(self.unlabelled_labels, -1)
        return (torch.cat([self.support, self.unlabelled], dim=1),
                torch.cat([self.support_labels, hidden], dim=1))


class EpisodeSampler:
    """Draws batches of N-way K-shot episodes from one split, deterministically from a seed.

    Args:
        data: the split to sample from.
        ways, shots, queries: N, K and Q (Q query images per class).
        unlabelled: U unlabelled support images per class (0 = fully supervised).
        distractors: D extra classes, outside the episode, that add U unlabelled images each.
        batch_size: B episodes per call.
        augment_rotations: rotate every image of a class by the same random multiple of
            90 degrees (MAML-style augmentation used by the paper's Omniglot scripts).
        seed: the same seed gives the same sequence of episodes.
        augment_shift: move every image (support, query, unlabelled), after any rotation, by
            its own random offset of up to this many pixels in x and in y, filling with zeros
            (background). Not in the reference's Omniglot scripts; an arm of the recipe study.
        independent_queries: draw each class's queries apart from its support images, as the
            reference does (a query may then be one of the support images: at 1-shot with 20
            drawings, 1 in 20); False draws them all without overlap.
    """

    def __init__(
        self,
        data: ClassImages,
        ways: int,
        shots: int,
        queries: int,
        unlabelled: int = 0,
        distractors: int = 0,
        batch_size: int = 1,
        augment_rotations: bool = False,
        seed: int = 0,
        augment_shift: int = 0,
        independent_queries: bool = False,
    ) -> None:
        for name, value, low in [("ways", ways, 1), ("shots", shots, 1), ("queries", queries, 1),
                                 ("unlabelled", unlabelled, 0), ("distractors", distractors, 0),
                                 ("batch_size", batch_size, 1), ("augment_shift", augment_shift, 0)]:
            if int(value) != value or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if distractors and not unlabelled:
            raise ConfigError("distractors add unlabelled samples: set unlabelled >= 1 as well")
        if ways + distractors > data.num_classes:
            raise ConfigError(
                f"{ways}-way episodes{f' with {distractors} distractor classes' if distractors else ''} "
                f"need {ways + distractors} classes, but the {data.dataset}/{data.split} split has "
                f"only {data.num_classes}. Lower ways/distractors or use a larger split."
            )
        per_episode_class = shots + queries + unlabelled
        if per_episode_class > data.per_class:
            raise ConfigError(
                f"shots + queries + unlabelled = {shots} + {queries} + {unlabelled} = "
                f"{per_episode_class} images per class, but {data.dataset}/{data.split} has only "
                f"{data.per_class} images per class. Lower shots, queries or unlabelled."
            )
        _, height, width = data.image_shape
        needs_square = augment_rotations or bool((data.rotation % 2).any())
        if needs_square and height != width:
            raise ConfigError(f"90-degree rotations need square images, got {height}x{width}")
        if augment_shift >= min(height, width):
            raise ConfigError(f"augment_shift must be below the image size ({height}x{width}), got {augment_shift}")
        self.data = data
        self.ways, self.shots, self.queries = ways, shots, queries
        self.unlabelled, self.distractors = unlabelled, distractors
        self.batch_size = batch_size
        self.augment_rotations = augment_rotations
        self.augment_shift = augment_shift
        self.independent_queries = bool(independent_queries)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def __repr__(self) -> str:
        return (f"EpisodeSampler({self.data.dataset}/{self.data.split}, {self.ways}-way "
                f"{self.shots}-shot, {self.queries} queries, {self.unlabelled} unlabelled, "
                f"{self.distractors} distractors, batch {self.batch_size}, seed {self.seed})")

    def __iter__(self):
        while True:
            yield self.sample()

    def sample(self) -> Episode:
        """Draw the next batch of episodes."""
        g, data = self.generator, self.data
        B, N, K, Q, U = self.batch_size, self.ways, self.shots, self.queries, self.unlabelled
        total_classes = N + self.distractors
        # Random class choice without replacement; slot order is random too (argsort of noise).
        classes = torch.rand(B, data.num_classes, generator=g).argsort(dim=1)[:, :total_classes]
        picks = torch.rand(B, total_classes, data.per_class, generator=g).argsort(dim=2)[..., : K + Q + U]
        if self.independent_queries:
            queries = torch.rand(B, total_classes, data.per_class, generator=g).argsort(dim=2)[..., :Q]
            picks = join_independent_queries(picks, queries, K, U)
        images = data.images[data.source[classes].unsqueeze(-1), picks]  # (B, N+D, K+Q+U, C, H, W) uint8
        turns = data.rotation[classes]
        if self.augment_rotations:
            turns = (turns + torch.randint(0, 4, turns.shape, generator=g)) % 4
        for k in (1, 2, 3):
            mask = turns == k
            if mask.any():
                images[mask] = torch.rot90(images[mask], k, dims=(-2, -1))
        if self.augment_shift:  # drawn last, so that the episodes are those of the unshifted sampler
            flat = images.flatten(0, 2)
            images = shift_images(flat, draw_offsets(len(flat), self.augment_shift, g)).view_as(images)
        images = to_float(images)
        shape = images.shape[3:]  # (C, H, W)
        slots = torch.arange(N)
        unl = images[:, :, K + Q:].reshape(B, total_classes * U, *shape)
        unl_labels = torch.cat([slots, torch.full((self.distractors,), -1)]).repeat_interleave(U)
        return Episode(
            support=images[:, :N, :K].reshape(B, N * K, *shape),
            support_labels=slots.repeat_interleave(K).expand(B, -1).clone(),
            query=images[:, :N, K:K + Q].reshape(B, N * Q, *shape),
            query_labels=slots.repeat_interleave(Q).expand(B, -1).clone(),
            unlabelled=unl,
            unlabelled_labels=unl_labels.expand(B, -1).clone(),
            classes=classes[:, :N],
            ways=N,
        )


def join_independent_queries(picks: torch.Tensor, queries: torch.Tensor, shots: int, unlabelled: int) -> torch.Tensor:
    """Drawings laid out as support | query | unlabelled, the queries taken from their own draw
    (`queries`) instead of from `picks`, which stays without repeats for support and unlabelled."""
    return torch.cat([picks[..., :shots], queries, picks[..., shots:shots + unlabelled]], dim=-1)


def draw_offsets(count: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 2) random (dy, dx) offsets, each uniform in [-max_shift, max_shift], on the
    generator's device."""
    return torch.randint(-max_shift, max_shift + 1, (count, 2), generator=generator, device=generator.device)


def shift_images(images: torch.Tensor, offsets: torch.Tensor, pad: int | None = None) -> torch.Tensor:
    """Move image i of (M, C, H, W) down by offsets[i, 0] and right by offsets[i, 1] pixels
    (negative: up / left); what comes in from outside the image is 0. One gather for all images:
    output pixel (y, x) reads pixel (y - dy, x - dx) of the image padded by `pad` pixels, at least
    the largest offset (default: that offset, which reads it from the tensor)."""
    m, _, height, width = images.shape
    if pad is None:
        pad = int(offsets.abs().max()) if len(offsets) else 0
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # (M, H', W', C)
    rows = torch.arange(height, device=images.device) + pad - offsets[:, :1]  # (M, H)
    cols = torch.arange(width, device=images.device) + pad - offsets[:, 1:]  # (M, W)
    picked = padded[torch.arange(m, device=images.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return picked.permute(0, 3, 1, 2).contiguous()
