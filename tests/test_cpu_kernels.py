"""The CPU kernel pins: where they apply, that they never override the user, and that the
workflow's jobs ran with them (the digits of one commit are one machine's, any x86 CPU)."""

import json
import os
import subprocess
import sys

import pytest

from overtrained.analysis import aggregate
from overtrained.execution import cpu_kernels

AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}


def test_an_avx2_x86_machine_is_pinned_to_the_avx2_kernels():
    env = {}
    chosen = cpu_kernels.pin("pinned", env, machine="x86_64", flags=AVX2 | {"avx512f"})
    assert env == chosen == cpu_kernels.PINS


def test_what_the_user_set_is_kept():
    env = {"ATEN_CPU_CAPABILITY": "avx512"}
    chosen = cpu_kernels.pin("pinned", env, machine="x86_64", flags=AVX2)
    assert env["ATEN_CPU_CAPABILITY"] == "avx512" and "ATEN_CPU_CAPABILITY" not in chosen
    assert env["MKL_CBWR"] == "AVX2"


@pytest.mark.parametrize(
    ("mode", "machine", "flags"),
    [
        ("native", "x86_64", AVX2),  # asked for the machine's own kernels
        ("pinned", "aarch64", {"neon", "asimd"}),  # no MKL, no AVX: nothing to pin
        ("pinned", "x86_64", {"sse4_2", "avx"}),  # a CPU without AVX2 keeps its own path
    ],
)
def test_nothing_is_pinned_where_the_pin_does_not_apply(mode, machine, flags):
    env = {}
    assert cpu_kernels.pin(mode, env, machine=machine, flags=flags) == {} and env == {}


def test_an_unknown_mode_names_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"execution.cpu_kernels .*pinned, native"):
        cpu_kernels.pin("fast", {})


def test_the_cpu_flags_and_model_come_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu avx avx2\n")
    assert cpu_kernels.cpu_flags(info) == {"fpu", "avx", "avx2"}
    assert cpu_kernels.cpu_model(info) == "Some CPU 9000"
    assert cpu_kernels.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.skipif(
    "avx2" not in cpu_kernels.cpu_flags() or os.environ.get("ATEN_CPU_CAPABILITY"),
    reason="needs an x86-64 CPU with AVX2 and no ATEN_CPU_CAPABILITY of the user's",
)
def test_torch_takes_the_pinned_path_and_provenance_says_so():
    code = (
        "from overtrained.execution import cpu_kernels; cpu_kernels.pin(); import torch, json; "
        "torch.ones(2).sum(); print(json.dumps(cpu_kernels.describe()))"
    )
    env = {k: v for k, v in os.environ.items() if k not in cpu_kernels.PINS}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    described = json.loads(out.stdout)
    assert described["torch_capability"] == "AVX2" and described["pins"] == cpu_kernels.PINS
    device = aggregate._device({"device": "cpu", "cpu": described})
    assert device.startswith("cpu (") and device.endswith("kernels AVX2, pinned)")
