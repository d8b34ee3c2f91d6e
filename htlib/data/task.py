"""A few-shot task: which images (dataset, class split, data folder) and what one episode holds.

`Task` is the one owner of these settings. It loads each of its splits once, builds the episode
samplers of training (with the task's augmentation) and of evaluation (without), and refuses a
task that one of its splits cannot hold before anything trains. A TrainConfig carries the same
fields flat (so that stored configs stay readable) and gives its Task as `cfg.task`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from htlib.data import load_split
from htlib.data.base import ClassImages
from htlib.data.device_episodes import DeviceEpisodeSampler
from htlib.data.episodes import EpisodeSampler
from htlib.errors import ConfigError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Task:
    dataset: str = "omniglot"
    split_scheme: str = "vinyals"  # Omniglot's class split (htlib.data.omniglot.SPLITS)
    data_dir: str | None = None  # None: HTLIB_DATA, else the project's data/ folder
    ways: int = 20
    shots: int = 1
    queries: int = 3  # per class
    unlabelled: int = 0  # unlabelled support samples per class
    distractors: int = 0  # classes whose samples are added to the support, unlabelled
    augment_rotations: bool = True  # training classes also turned by 90, 180, 270 degrees
    augment_shift: int = 0  # training images moved by up to this many pixels
    # queries drawn apart from the support images (one may repeat a support image), as the reference
    independent_queries: bool = False
    _loaded: dict = field(default_factory=dict, init=False, compare=False, repr=False)  # split name -> images

    @classmethod
    def of(cls, settings) -> "Task":
        """The task of anything with these fields (a TrainConfig)."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls) if f.init})

    def replace(self, **changes) -> "Task":
        """This task with other settings (the splits already loaded are kept when the images are the same)."""
        out = dataclasses.replace(self, **changes)
        if (out.dataset, out.split_scheme, out.data_dir) == (self.dataset, self.split_scheme, self.data_dir):
            out._loaded.update(self._loaded)
        return out

    def split(self, name: str) -> ClassImages:
        """The images of split `name` ("train", "val" or "test"), loaded on first use."""
        if name not in SPLIT_NAMES:
            raise ConfigError(f"Unknown split {name!r}; choose one of {SPLIT_NAMES}.")
        if name not in self._loaded:
            self._loaded[name] = load_split(self.dataset, name, self.data_dir, split_scheme=self.split_scheme)
        return self._loaded[name]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.split("val").image_shape

    def training_sampler(self, batch_size: int, seed: int, device: torch.device | None = None) -> EpisodeSampler:
        """Training episodes, augmented as the task says; drawn on `device` if given (a GPU's own sampler)."""
        common = dict(batch_size=batch_size, augment_rotations=self.augment_rotations, seed=seed,
                      augment_shift=self.augment_shift, independent_queries=self.independent_queries)
        shape = (self.split("train"), self.ways, self.shots, self.queries, self.unlabelled, self.distractors)
        if device is not None:
            return DeviceEpisodeSampler(*shape, **common, device=device)
        return EpisodeSampler(*shape, **common)

    def eval_sampler(self, split: str, batch_size: int, seed: int, **changes) -> EpisodeSampler:
        """Validation or test episodes, never augmented. `changes` (shots, unlabelled, distractors,
        ways, queries) set another support set for the test than the task trains with."""
        task = self.replace(**changes) if changes else self
        return EpisodeSampler(self.split(split), task.ways, task.shots, task.queries, task.unlabelled,
                              task.distractors, batch_size=batch_size, seed=seed,
                              independent_queries=task.independent_queries)

    def check(self) -> None:
        """Refuse a task that one of the splits cannot hold (more ways than classes, more shots +
        queries than drawings), naming the split."""
        for name in SPLIT_NAMES:
            try:
                EpisodeSampler(self.split(name), self.ways, self.shots, self.queries, self.unlabelled,
                               self.distractors, augment_shift=self.augment_shift)
            except ConfigError as exc:
                raise ConfigError(f"The {name} episodes cannot be drawn: {exc}") from None
