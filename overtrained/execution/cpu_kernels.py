"""One set of CPU kernels on every x86-64 machine, so one commit gives one set of digits.

torch chooses its CPU kernels by the instruction set it finds: ATen's own kernels (softmax,
norms, reductions, the optimizer's foreach ops) run AVX2 or AVX-512 code, and MKL's matrix
products choose their own code path by CPU vendor and instruction set. Paths round
differently in the last bit, and over thousands of optimizer steps a last-bit difference
grows into another trajectory: on one machine, forcing ATen's baseline kernels or MKL's
baseline path moved the default model's weights by up to 0.34 and its held-out loss by up
to 0.022 nats after 1M tokens (experiments/determinism/kernel_paths.py and its
kernel_paths.json), as much as a change of seed. That is why the same commit gave other
numbers on another machine.

`pin` asks every job for the AVX2 path of both (`ATEN_CPU_CAPABILITY=avx2`, MKL's
conditional numerical reproducibility `MKL_CBWR=AVX2`, oneDNN capped at AVX2), which every
x86-64 CPU of the last decade runs, so AVX2 and AVX-512 machines, Intel or AMD, take the
same kernels. Variables the user set are left alone, and `execution.cpu_kernels: native`
turns the pin off (the machine's fastest kernels, its own digits). Other CPUs (ARM) and GPUs
keep their own kernels: their digits differ, which is why verdicts rest on replicates.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import MutableMapping
from pathlib import Path

PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
MODES = ("pinned", "native")


@functools.cache
def _cpuinfo_field(name: str, cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """A field of the first CPU in /proc/cpuinfo (None where the file or field is missing)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name):
            return line.partition(":")[2].strip()
    return None


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of the first CPU (empty where /proc/cpuinfo is missing)."""
    return set((_cpuinfo_field("flags", cpuinfo) or "").split())


def pin(
    mode: str = "pinned",
    environ: MutableMapping[str, str] = os.environ,
    machine: str | None = None,
    flags: set[str] | None = None,
) -> dict[str, str]:
    """Set the kernel pins in `environ` (for this process and the jobs it starts) where they
    apply and are not set already; return what was set. Call before torch is imported."""
    if mode not in MODES:
        raise ValueError(f"execution.cpu_kernels is {mode!r}; use one of {', '.join(MODES)}")
    if mode == "native":
        return {}
    machine = machine or platform.machine()
    if machine.lower() not in ("x86_64", "amd64"):
        return {}
    if "avx2" not in (cpu_flags() if flags is None else flags):
        return {}
    chosen = {key: value for key, value in PINS.items() if key not in environ}
    environ.update(chosen)
    return chosen


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine()


def describe() -> dict:
    """For provenance: the CPU, the kernel path torch took (if torch is loaded), the pins."""
    out = {"model": cpu_model(), "machine": platform.machine()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_capability"] = torch.backends.cpu.get_cpu_capability()
        out["threads"] = torch.get_num_threads()
    out["pins"] = {key: os.environ[key] for key in PINS if key in os.environ}
    return out
