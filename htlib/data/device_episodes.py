"""The episode sampler of the fast training path: the split and the sampling live on the device.

`EpisodeSampler` (htlib.data.episodes) is the readable reference that notebook 01 teaches. It
samples on the CPU and the trainer copies every batch to the GPU: at large batches that copy
(hundreds of MB per step from pageable memory) and the sampler's sort over all classes cap the
speed. This sampler draws the same distribution of episodes with a few tensor ops on the device
that holds the split:

- the split is stored once as uint8 with its four quarter turns pre-built, (sources, 4, per class,
  C, H, W): Omniglot's training split is about 100 MB, and a rotation becomes an index;
- the N (+D) classes of each episode are the top-k of one random key per class: a uniformly random
  subset in a uniformly random slot order, as the reference's argsort of noise;
- the drawings of each class are the top-k of one random key per drawing, split into K support,
  Q query and U unlabelled as in the reference;
- every shape is fixed by (B, N, K, Q, U, D), and nothing is read back to the host.

Same seed, same device kind: same episodes. The stream differs from EpisodeSampler's (other ops,
and on a GPU another random generator), so a run's numbers depend on which sampler it used; the
validation and test episodes always come from EpisodeSampler, identical for every run.
"""

from __future__ import annotations

import torch

from htlib.data.base import ClassImages, to_float
from htlib.data.episodes import Episode, EpisodeSampler, draw_offsets, join_independent_queries, shift_images


class DeviceEpisodeSampler(EpisodeSampler):
    """EpisodeSampler's task and checks, sampled on `device` (see the module docstring)."""

    def __init__(self, data: ClassImages, ways: int, shots: int, queries: int, unlabelled: int = 0,
                 distractors: int = 0, batch_size: int = 1, augment_rotations: bool = False, seed: int = 0,
                 augment_shift: int = 0, independent_queries: bool = False,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(data, ways, shots, queries, unlabelled, distractors, batch_size, augment_rotations,
                         seed, augment_shift, independent_queries)
        self.device = device = torch.device(device)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        _, height, width = data.image_shape
        turns = range(4) if height == width else range(1)  # the checks above refuse turns of non-square images
        self.images = torch.stack([torch.rot90(data.images, k, dims=(-2, -1)) for k in turns], dim=1).to(device)
        self.source = data.source.to(device)
        self.rotation = data.rotation.to(device)
        # The labels are the same for every batch: built once, never written to by the models.
        n, k, q, u, b = ways, shots, queries, unlabelled, batch_size
        slots = torch.arange(n, device=device)
        hidden = torch.full((distractors,), -1, device=device)
        self.support_labels = slots.repeat_interleave(k).expand(b, -1)
        self.query_labels = slots.repeat_interleave(q).expand(b, -1)
        self.unlabelled_labels = torch.cat([slots, hidden]).repeat_interleave(u).expand(b, -1)

    def __repr__(self) -> str:
        return super().__repr__().replace("EpisodeSampler(", "DeviceEpisodeSampler(", 1)[:-1] + f", on {self.device})"

    def sample(self) -> Episode:
        """Draw the next batch of episodes, on the sampler's device."""
        g, dev = self.generator, self.device
        B, N, K, Q, U = self.batch_size, self.ways, self.shots, self.queries, self.unlabelled
        classes_per_episode = N + self.distractors
        classes = torch.rand(B, self.data.num_classes, generator=g, device=dev).topk(classes_per_episode).indices
        per_class = self.images.shape[2]
        picks = torch.rand(B, classes_per_episode, per_class, generator=g, device=dev).topk(K + Q + U).indices
        if self.independent_queries:
            queries = torch.rand(B, classes_per_episode, per_class, generator=g, device=dev).topk(Q).indices
            picks = join_independent_queries(picks, queries, K, U)
        turns = self.rotation[classes]
        if self.augment_rotations:
            turns = (turns + torch.randint(0, 4, turns.shape, generator=g, device=dev)) % 4
        images = self.images[self.source[classes][..., None], turns[..., None], picks]  # (B, N+D, K+Q+U, C, H, W)
        if self.augment_shift:
            flat = images.flatten(0, 2)
            offsets = draw_offsets(len(flat), self.augment_shift, g)
            images = shift_images(flat, offsets, pad=self.augment_shift).view_as(images)
        images = to_float(images)
        shape = images.shape[3:]
        return Episode(
            support=images[:, :N, :K].reshape(B, N * K, *shape),
            support_labels=self.support_labels,
            query=images[:, :N, K:K + Q].reshape(B, N * Q, *shape),
            query_labels=self.query_labels,
            unlabelled=images[:, :, K + Q:].reshape(B, classes_per_episode * U, *shape),
            unlabelled_labels=self.unlabelled_labels,
            classes=classes[:, :N],
            ways=N,
        )
