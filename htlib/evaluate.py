"""Accuracy with a 95% confidence interval over many test episodes.

The field's convention (and this project's): mean query accuracy over at least 600
episodes, +- 1.96 standard errors of the per-episode accuracies.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from htlib.data.episodes import Episode, EpisodeSampler

EVAL_SEED = 2022  # test episodes are the same for every method and training seed: paired comparisons


@dataclass
class Accuracy:
    accuracy: float  # mean over episodes, in [0, 1]
    ci95: float  # half-width of the 95% confidence interval
    episodes: int
    ways: int
    shots: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{100 * self.accuracy:.2f}% +- {100 * self.ci95:.2f}% "
                f"({self.ways}-way {self.shots}-shot, {self.episodes} episodes)")


def mean_ci95(per_episode: torch.Tensor) -> tuple[float, float]:
    """Mean and 95% CI half-width (normal approximation) of per-episode accuracies."""
    n = per_episode.numel()
    mean = float(per_episode.mean())
    if n < 2:
        return mean, float("nan")
    return mean, 1.96 * float(per_episode.std(unbiased=True)) / math.sqrt(n)


def episode_inputs(episode: Episode, use_unlabelled: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The support set a model sees: labelled images, plus the unlabelled ones (label -1) if asked."""
    if use_unlabelled and episode.unlabelled.shape[1] > 0:
        return episode.support_with_unlabelled()
    return episode.support, episode.support_labels


def episode_logits(model: nn.Module, episode: Episode, use_unlabelled: bool = True) -> torch.Tensor:
    """Query logits (B, N*Q, N) of any method: every model maps (support, labels, query, N) to logits."""
    support, labels = episode_inputs(episode, use_unlabelled)
    return model(support, labels, episode.query, episode.ways)


def per_episode_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, Q, N) logits and (B, Q) labels -> (B,) fraction of queries classified correctly."""
    return (logits.argmax(dim=-1) == labels).float().mean(dim=1)


def evaluate(
    model: nn.Module,
    sampler: EpisodeSampler,
    episodes: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Accuracy:
    """Mean accuracy and 95% CI of `model` over `episodes` episodes drawn from `sampler`.

    Runs without gradients for models that do not need them; MAML-style models that adapt
    with gradients at test time enable them themselves.
    """
    accs = []
    was_training = model.training
    model.eval()
    total = math.ceil(episodes / sampler.batch_size)
    iterator = range(total)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="test episodes", leave=False)
    with torch.no_grad():
        for _ in iterator:
            ep = sampler.sample().to(device)
            accs.append(per_episode_accuracy(episode_logits(model, ep), ep.query_labels).cpu())
    model.train(was_training)
    per_episode = torch.cat(accs)[:episodes]
    mean, ci = mean_ci95(per_episode)
    return Accuracy(mean, ci, int(per_episode.numel()), sampler.ways, sampler.shots)
