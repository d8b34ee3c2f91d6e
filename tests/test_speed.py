"""The fast training path (htlib.speed) against the plain eager fp32 step it replaces."""

from __future__ import annotations

import functools
import inspect
import platform

import pytest
import torch
import torch.nn.functional as F

from htlib import speed
from htlib.errors import CheckpointError
from htlib.models.checks import trusted_episodes
from htlib.train import Trainer, train
from test_train import tiny

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.numeric]  # numeric: see pyproject.toml


def _first_gradients(**settings) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss of a first training step and the gradients the optimizer receives (unclipped)."""
    trainer = Trainer(tiny(grad_clip=1e9, **settings), None)
    grads = {}

    def record(optimizer, args, kwargs):
        grads.update({n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None})

    trainer.optimizer.register_step_pre_hook(record)
    with trusted_episodes():
        loss, _ = trainer.train_step()
    return float(loss), grads


def test_foreach_optimizer_and_clipping_give_the_per_parameter_numbers_bit_for_bit():
    def steps(fast: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01, foreach=fast)
        for i in range(4):
            x = torch.randn(16, 5, generator=torch.Generator().manual_seed(i))
            optimizer.zero_grad()
            model(x).pow(2).sum().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5, foreach=fast)
            optimizer.step()
        return [p.detach() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(steps(False), steps(True)))


def test_fast_kernels_keep_the_numbers_of_the_unfused_step(monkeypatch):
    """Fused attention does the same arithmetic in another order: a first step's loss and every
    gradient agree with the unfused step's up to fp32 rounding (the tolerance for rounding that
    differs between CPUs; a wrong kernel, a missed scale or a dropped term, is off by far more)."""
    monkeypatch.setenv(speed.FAST_KERNELS_SWITCH, "1")
    loss, grads = _first_gradients()
    monkeypatch.setenv(speed.FAST_KERNELS_SWITCH, "0")
    unfused_loss, unfused_grads = _first_gradients()
    assert loss == pytest.approx(unfused_loss, rel=1e-6)
    assert grads.keys() == unfused_grads.keys()
    for key, grad in grads.items():
        torch.testing.assert_close(grad, unfused_grads[key], rtol=1e-4, atol=1e-6, msg=key)


def test_fused_adamw_follows_the_multi_tensor_adamw():
    """The fused kernel on the CPU (htlib.optim.kernels) against the multi-tensor one of before:
    four steps of the same gradients give the same weights to fp32 rounding."""
    def steps(kernel: dict) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01, **kernel)
        for i in range(4):
            x = torch.randn(16, 5, generator=torch.Generator().manual_seed(i))
            optimizer.zero_grad()
            model(x).pow(2).sum().backward()
            optimizer.step()
        return [p.detach() for p in model.parameters()]

    fused, multi_tensor = steps({"fused": True}), steps({"foreach": True})
    for got, want in zip(fused, multi_tensor):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_attention_maps_asked_for_or_not_give_the_same_output(monkeypatch):
    """Without maps the encoder takes PyTorch's fused attention (counted here); with them, or with
    the switch off, the written-out softmax: the outputs and gradients agree to fp32 rounding."""
    from htlib.models.transformer import TransformerConfig, TransformerEncoder

    torch.manual_seed(0)
    encoder = TransformerEncoder(TransformerConfig(width=12, heads=2, layers=2))
    x = torch.randn(3, 7, 12, requires_grad=True)
    calls = []
    fused = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused(*a, **k))

    def output_and_grad(return_attention: bool):
        out = encoder(x, return_attention=return_attention)
        out = out[0] if return_attention else out
        return out, torch.autograd.grad(out.square().sum(), x)[0]

    with_maps = output_and_grad(True)
    assert not calls
    without_maps = output_and_grad(False)
    assert len(calls) == 2  # one per encoder layer
    for got, want in zip(without_maps, with_maps):  # outputs and gradients are O(1): atol is rounding
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv(speed.FAST_KERNELS_SWITCH, "0")
    output_and_grad(False)
    assert len(calls) == 2  # the switch brings the written-out attention back


def test_a_resumed_run_takes_this_process_kernels_not_the_checkpoints(monkeypatch, tmp_path):
    """A checkpoint written with the unfused kernels resumes with the fused ones, and back."""
    monkeypatch.setenv(speed.FAST_KERNELS_SWITCH, "0")
    Trainer(tiny(), tmp_path).fit(progress=False, stop_at=2)
    monkeypatch.setenv(speed.FAST_KERNELS_SWITCH, "1")
    resumed = Trainer(tiny(), tmp_path)
    assert resumed.restore() and resumed.step == 2
    assert {(g["fused"], g["foreach"]) for g in resumed.optimizer.param_groups} == {(True, None)}
    resumed.fit(progress=False, stop_at=4)
    monkeypatch.setenv(speed.FAST_KERNELS_SWITCH, "0")
    again = Trainer(tiny(), tmp_path)
    assert again.restore() and again.step == 4
    assert {(g["fused"], g["foreach"]) for g in again.optimizer.param_groups} == {(None, True)}


def test_bf16_loss_and_gradients_stay_close_to_fp32():
    """bf16 keeps 8 bits of mantissa (0.4% per rounding); through the generator and the CNN that
    gave, on one tiny model: loss 0.06% off, gradient cosine 0.9991, norm 1.2% off, every tensor's
    cosine >= 0.9946 except ones whose gradient is ~0 (a LayerNorm bias at 2e-8). The bounds sit
    well outside those and well inside what a broken cast gives (cosine ~0)."""
    loss32, grads32 = _first_gradients()
    loss16, grads16 = _first_gradients(precision="bf16")
    assert loss16 != loss32  # bf16 really ran
    assert loss16 == pytest.approx(loss32, rel=0.01)
    assert grads16.keys() == grads32.keys()
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat16 = torch.cat([grads16[k].flatten() for k in grads32])
    assert F.cosine_similarity(flat16, flat32, dim=0) > 0.99
    assert flat16.norm() == pytest.approx(float(flat32.norm()), rel=0.05)
    largest = max(float(g.norm()) for g in grads32.values())
    for key, g32 in grads32.items():
        if g32.norm() > 0.01 * largest:  # a gradient near zero has no direction to keep
            assert F.cosine_similarity(grads16[key].flatten(), g32.flatten(), dim=0) > 0.95, key


def test_compiled_model_is_one_graph_with_eager_outputs_and_gradients():
    trainer = Trainer(tiny(), None)
    episode = trainer.sampler.sample()
    args = (episode.support, episode.support_labels, episode.query, episode.ways)
    compiled = speed.compile_model(trainer.model, trainer.device, backend="aot_eager")  # fullgraph
    with trusted_episodes():
        eager_out = trainer.model(*args)
        eager_grads = torch.autograd.grad(eager_out.square().sum(), list(trainer.model.parameters()))
        out = compiled(*args)
        grads = torch.autograd.grad(out.square().sum(), list(trainer.model.parameters()))
    torch.testing.assert_close(out, eager_out, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, eager_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_compile_setting_trains_through_the_compiled_model(monkeypatch, tmp_path):
    monkeypatch.setattr(speed, "compile_model", functools.partial(speed.compile_model, backend="aot_eager"))
    plain = train(tiny(steps=3, val_every=3), tmp_path / "plain", progress=False)
    compiled = train(tiny(steps=3, val_every=3, compile=True), tmp_path / "compiled", progress=False)
    losses = [torch.tensor(out.metrics["loss"].to_numpy()) for out in (compiled, plain)]
    torch.testing.assert_close(*losses, atol=1e-4, rtol=1e-4)


def test_device_sampler_run_resumes_exactly_and_keeps_its_sampler(tmp_path):
    cfg = tiny(episodes_on_device=True)
    straight = train(cfg, tmp_path / "straight", progress=False)
    Trainer(cfg, tmp_path / "resumed").fit(progress=False, stop_at=4)
    resumed = train(cfg, tmp_path / "resumed", progress=False)
    assert resumed.metrics.drop(columns="seconds").equals(straight.metrics.drop(columns="seconds"))
    Trainer(tiny(), tmp_path / "host").fit(progress=False, stop_at=2)
    with pytest.raises(CheckpointError, match="sampled on the host.*on the cpu"):
        train(tiny(episodes_on_device=True), tmp_path / "host", progress=False)


def test_training_step_reads_no_value_back_from_the_device(monkeypatch):
    """Each of these would make the host wait for a GPU; on the CPU we catch their Python calls
    (the GPU job also runs with torch.cuda.set_sync_debug_mode("error"))."""
    trainer = Trainer(tiny(episodes_on_device=True), None)
    names = ("item", "tolist", "__bool__", "__float__", "__int__")
    originals = {name: getattr(torch.Tensor, name) for name in names}

    def guard(name):
        def read(tensor, *args, **kwargs):
            # the optimizer's step counters live on the host with foreach kernels (fused AdamW keeps
            # them on the GPU): reading them costs no wait for the device
            if any("torch/optim/" in frame.filename for frame in inspect.stack()[1:]):
                return originals[name](tensor, *args, **kwargs)
            raise AssertionError(f"the training step called Tensor.{name}")
        return read

    for name in names:
        monkeypatch.setattr(torch.Tensor, name, guard(name))
    with trusted_episodes():
        loss, acc = trainer.train_step()
    monkeypatch.undo()
    assert loss.dim() == 0 and 0 <= float(acc) <= 1


def test_local_features_stay_finite_under_cpu_bf16_autocast():
    """oneDNN's bf16 weight gradient of a strided 3x3 conv on 1x1 maps is sometimes not finite (about
    6% of calls on 2 threads, measured); LocalFeatures runs in fp32 under CPU autocast to avoid it."""
    from htlib.models.hypertransformer import LocalFeatures

    torch.manual_seed(0)
    features = LocalFeatures(8, 8, "relu")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for _ in range(100):
            x = torch.randn(320, 8, 1, 1)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = features(x)
            out.square().mean().backward()
            assert all(torch.isfinite(p.grad).all() for p in features.parameters())
            features.zero_grad(set_to_none=True)
    finally:
        torch.set_num_threads(threads)


def _in_fresh_process(code: str, **env: str) -> str:
    """Run `code` in a new Python (the allocator setting is process-wide) and return its stdout."""
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


_PAGE_FAULTS = """
import resource, torch
from htlib import speed
speed.tune_backends(torch.device("cpu"))
for _ in range(3):  # warm: the first allocations fault whatever the setting
    torch.empty(10_000_000).fill_(1.0)
faults = []
for _ in range(20):  # a 40 MB buffer freed and allocated again, as a training step does
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(10_000_000).fill_(1.0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[len(faults) // 2])
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator tuning is for glibc only")
def test_cpu_tuning_stops_the_page_faults_of_reallocated_buffers_and_the_switch_turns_it_off():
    """A 40 MB buffer is 9,800 pages, above the largest size glibc ever serves from its heap (32 MB):
    glibc unmaps it on free and faults every page in again on the next first touch; tuned, the block
    stays in the heap and is reused without a fault. The median round is compared: on some machines
    the tuned heap still grows once (another allocation lands above the freed block, so one round
    faults a fresh 40 MB), which is a one-off, not the steady state a training step lives in.
    (Smaller buffers fault through glibc's trimming of the heap's top, which depends on the order of
    frees; a training step has both.)"""
    untuned = int(_in_fresh_process(_PAGE_FAULTS, HTLIB_CPU_TUNING="0"))
    tuned = int(_in_fresh_process(_PAGE_FAULTS, HTLIB_CPU_TUNING="1"))
    assert untuned > 9000, untuned  # the median round faults (nearly) every page
    assert tuned < 100, tuned  # the median round reuses the block


_STEP_LOSSES = """
import sys, torch
sys.path.insert(0, "tests")
from test_train import tiny
from htlib.train import Trainer
from htlib.models.checks import trusted_episodes
torch.set_num_threads(1)
trainer = Trainer(tiny(episodes_per_step=4), None)
with trusted_episodes():
    print([float(trainer.train_step()[0]).hex() for _ in range(3)])
"""


def test_cpu_tuning_leaves_the_training_numbers_bit_for_bit():
    """Where memory comes from must not change the arithmetic: three steps, the same losses exactly
    (the same machine, threads and capability in both processes)."""
    assert _in_fresh_process(_STEP_LOSSES, HTLIB_CPU_TUNING="0") == _in_fresh_process(_STEP_LOSSES,
                                                                                   HTLIB_CPU_TUNING="1")


@pytest.mark.parametrize("system, libc", [("Darwin", ""), ("Linux", "musl"), ("Windows", "")])
def test_cpu_tuning_changes_nothing_where_there_is_no_glibc(monkeypatch, system, libc):
    """mallopt is glibc's: elsewhere the tuning reports False and calls into no C library."""
    import ctypes

    from htlib import speed

    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "libc_ver", lambda: (libc, ""))
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: pytest.fail("a C library was loaded"))
    assert speed.tune_allocator() is False
