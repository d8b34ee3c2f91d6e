"""What this CPU is, and how to make it round like another one.

Float results depend on the instruction set the kernels use (AVX-512, AVX2 or plain SSE give
different reduction orders) and on the thread count. PyTorch, oneDNN and MKL each take an
environment variable that caps the instruction set they use, so one machine can reproduce
another machine's rounding. `make test` uses `other_capability_env()` to run the numerically
sensitive tests a second time under such a cap (see README, "Testing").

    python -m htlib.cpu              # this CPU: model, capability
    python -m htlib.cpu --other-env  # VAR=value ... for a capability below this one's
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

# Each capability torch reports, and the caps that make all three libraries stop at it.
_CAPS = {
    "AVX512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "DEFAULT": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
_ORDER = ["AVX512", "AVX2", "DEFAULT"]


def capability() -> str:
    """The instruction set torch's CPU kernels use now: "AVX512", "AVX2", "DEFAULT" (or another
    name a later torch reports, e.g. "ZVECTOR"). ATEN_CPU_CAPABILITY lowers it."""
    return torch.backends.cpu.get_cpu_capability()


def other_capability_env(current: str | None = None) -> dict[str, str]:
    """The variables that make this process round like a CPU one step below this one: AVX2 on an
    AVX-512 machine, plain SSE on an AVX2 one. A CPU already at the bottom (or of another family)
    gets DEFAULT, which still changes oneDNN's and MKL's kernels where they exist."""
    current = (current or capability()).upper()
    below = _ORDER[_ORDER.index(current) + 1] if current in _ORDER[:-1] else "DEFAULT"
    return dict(_CAPS[below])


def cpu_model() -> str:
    """The CPU's marketing name ("Intel(R) Xeon(R) Processor", "AMD EPYC 7B13"...), for records."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> set[str]:
    """The feature flags /proc/cpuinfo lists for the first core (empty where there is no such file)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(flags: set[str] | None = None) -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX-512 BF16 or AMX-BF16). Without it
    bf16 autocast is emulated: several times slower than fp32 (7x on an AVX2-only AMD EPYC)."""
    return bool({"avx512_bf16", "amx_bf16"} & (cpu_flags() if flags is None else flags))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m htlib.cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--other-env", action="store_true",
                        help="print VAR=value ... that reproduce the rounding of a CPU below this one")
    args = parser.parse_args(argv)
    if args.other_env:
        print(" ".join(f"{k}={v}" for k, v in other_capability_env().items()))
    else:
        print(f"{cpu_model()}; torch {torch.__version__} kernels: {capability()}; "
              f"{torch.get_num_threads()} threads; native bf16: {'yes' if native_bf16() else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
