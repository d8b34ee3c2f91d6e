"""htlib.cpu: what the CPU is, and the variables that make it round like the CPU one step below."""

from __future__ import annotations

import os
import subprocess
import sys

from htlib.cpu import capability, cpu_model, main, other_capability_env


def test_the_other_capability_is_one_instruction_set_below():
    assert other_capability_env("AVX512") == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                              "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    assert other_capability_env("AVX2")["ATEN_CPU_CAPABILITY"] == "default"
    assert other_capability_env("DEFAULT")["ATEN_CPU_CAPABILITY"] == "default"  # already at the bottom
    assert other_capability_env("ZVECTOR")["ATEN_CPU_CAPABILITY"] == "default"  # another family
    assert capability() in {"AVX512", "AVX2", "DEFAULT", "ZVECTOR"} and cpu_model()


def test_the_printed_variables_really_lower_torchs_capability(capsys):
    main(["--other-env"])
    assignments = dict(item.split("=", 1) for item in capsys.readouterr().out.split())
    assert assignments == other_capability_env()
    # in a fresh process with those variables, torch reports the lower capability (or stays at DEFAULT)
    env = {**os.environ, **assignments}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == assignments["ATEN_CPU_CAPABILITY"].upper()


def test_native_bf16_reads_the_cpu_flags():
    from htlib.cpu import native_bf16

    assert native_bf16({"avx2", "avx512f", "avx512_bf16"}) and native_bf16({"amx_bf16", "amx_tile"})
    assert not native_bf16({"avx2", "fma", "avx512f"}) and not native_bf16(set())


def test_bf16_on_a_cpu_without_bf16_hardware_warns_before_training(monkeypatch):
    import warnings

    import pytest
    import torch

    from htlib import optim

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(optim, "native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no bf16 hardware.*--precision fp32"):
        optim.warn_if_slow_precision("bf16", cpu)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optim.warn_if_slow_precision("fp32", cpu)  # the default never warns
        optim.warn_if_slow_precision("bf16", cuda)  # a GPU's bf16 is its own matter
        monkeypatch.setattr(optim, "native_bf16", lambda: True)
        optim.warn_if_slow_precision("bf16", cpu)
