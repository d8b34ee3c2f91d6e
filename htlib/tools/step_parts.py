"""Where the time of one HyperTransformer training step goes: each part of the step timed alone,
forward and backward, on the shapes of a real step (`python -m htlib bench --parts`).

The parts, in the order a step runs them: the shared image features of the support set; for each
generated layer, the local features of the support activations at its input and its transformer;
the support set through the freshly generated CNN layers (the activations the next layer's tokens
are built from); the queries through the generated CNN; gradient clipping and the optimizer step.
Each part runs alone with a stand-in loss (the mean square of its output), so the parts need not add
up to the step: the row "step" is the whole training step timed the same way, and the README shows
how much of it the parts cover. Times are the fastest of `repeats` calls (other work on the machine
only ever slows one down) and their median.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

import htlib.cpu as cpu
import htlib.optim as optim
import htlib.speed as speed
from htlib.config import TrainConfig
from htlib.errors import ConfigError
from htlib.models.checks import trusted_episodes
from htlib.models.cnn import cnn_block, cnn_features

# a row of the table is one measurement of this; a newer one replaces it (htlib.tools.bench.write_table)
TABLE_KEY = ["device", "cpu", "threads", "channels", "episodes_per_step", "part"]


def _timed(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, float]:
    """(fastest, median) seconds of `repeats` calls, after two warm-up calls."""
    def call() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def step_parts(cfg: TrainConfig, repeats: int = 8) -> list[dict]:
    """One row per part of a training step of `cfg`'s HyperTransformer (see the module's notes)."""
    from htlib.train import Trainer

    trainer = Trainer(dataclasses.replace(cfg, steps=max(cfg.steps, 1000)), None)
    model = trainer.model
    if not hasattr(model, "generators"):
        raise ConfigError(f"--parts times the parts of a HyperTransformer step; {cfg.method!r} is not one.")
    spec = model.cfg.cnn
    episode = trainer.sampler.sample().to(trainer.device)
    b, s = episode.support_labels.shape

    def backward_of(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            forward().float().square().mean().backward()
            model.zero_grad(set_to_none=True)
        return run

    parts: list[tuple[str, Callable[[], None]]] = [("step", trainer.train_step)]
    with torch.no_grad(), trusted_episodes():  # the support activations and tokens every part starts from
        weights = model.generate_weights(episode.support, episode.support_labels, episode.ways)
        acts = [episode.support]
        for layer in range(spec.num_conv_layers):
            acts.append(cnn_block(acts[-1], weights[f"conv{layer}"], *model.bn[layer], spec.activation, spec.bn_eps))
        slots = torch.where(episode.support_labels < 0, model.cfg.max_ways, episode.support_labels)
        labels = model.label_table("logits")(slots)
        shared = model.shared(episode.support.flatten(0, 1)).reshape(b, s, -1) if model.shared is not None else None
    weights = {name: w.detach().requires_grad_() for name, w in weights.items()}
    if model.shared is not None:
        parts.append(("shared features", backward_of(lambda: model.shared(episode.support.flatten(0, 1)))))
    names = [f"conv{layer}" for layer in range(spec.num_conv_layers)] + ["logits"]
    for layer, name in enumerate(names):
        if name not in model.generators:
            continue
        generator, layer_acts = model.generators[name], acts[layer].detach().requires_grad_(layer > 0)
        if generator.local is not None:
            parts.append((f"local features {name}",
                          backward_of(lambda g=generator, a=layer_acts: g.local(a.flatten(0, 1)))))
        holders = generator.placeholders if generator.placeholders is not None else \
            model.label_table("logits").weight[:episode.ways]
        with torch.no_grad():
            tokens = generator.tokens(acts[layer], labels, shared, holders)
        parts.append((f"transformer {name}", backward_of(lambda g=generator, t=tokens: g.transformer(t))))

    def support_cnn() -> torch.Tensor:
        x = episode.support
        for layer in range(spec.num_conv_layers):
            x = cnn_block(x, weights[f"conv{layer}"], *model.bn[layer], spec.activation, spec.bn_eps)
        return x

    parts.append(("support through the generated CNN", backward_of(support_cnn)))
    parts.append(("queries through the generated CNN",
                  backward_of(lambda: cnn_features(episode.query, weights, model.bn, spec))))

    def optimizer_step() -> None:
        optim.clip_gradients(model, cfg.grad_clip)
        trainer.optimizer.step()

    parts.append(("gradient clipping and optimizer", optimizer_step))
    rows = []
    with trusted_episodes():
        for part, fn in parts:
            if fn is optimizer_step:  # the other parts leave no gradients behind: the step needs them all
                model(episode.support, episode.support_labels, episode.query, episode.ways).square().mean().backward()
            fastest, median = _timed(fn, repeats, trainer.device)
            rows.append({"part": part, "ms": round(1e3 * fastest, 2), "ms_median": round(1e3 * median, 2)})
    machine = {"device": trainer.device.type, "cpu": cpu.cpu_model(), "capability": cpu.capability(),
               "threads": torch.get_num_threads(), "torch": torch.__version__, "channels": cfg.channels,
               "episodes_per_step": cfg.episodes_per_step, "ways": cfg.ways, "shots": cfg.shots,
               "queries": cfg.queries, "fast_kernels": speed.fast_kernels_enabled(), "repeats": repeats}
    return [{**row, **machine} for row in rows]
