"""The host target (mcpu from LLVM, minus the vector features a virtual machine hides), and the
up-front check of user targets."""

import json
import re

import numpy as np
import pytest
import tvm

from ms_meta.errors import TargetError
from ms_meta.tuning.target import (
    check_target,
    hidden_cpu_features,
    host_cpu_flags,
    host_target,
    parse_target,
    target_key,
)
from ms_meta.workloads import resolve_one

# /proc/cpuinfo of a Zen 4 guest whose hypervisor hides AVX-512 (seen on cloud VMs).
ZEN4_GUEST_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
    "sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl pni pclmulqdq "
    "ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor "
    "lahf_lm abm sse4a bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni "
    "xsaveopt xsavec xgetbv1 xsaves clzero umip vaes vpclmulqdq rdpid fsrm"
)


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\n")
    return path


def test_hidden_avx512_is_turned_off_for_a_zen4_guest(tmp_path):
    flags = host_cpu_flags(_cpuinfo(tmp_path, ZEN4_GUEST_FLAGS))
    hidden = hidden_cpu_features("znver4", flags)
    assert "avx512f" in hidden and "avx512vnni" in hidden and "gfni" in hidden
    # what the guest does have stays on; baseline and tuning features are never touched
    assert not {"avx", "avx2", "fma", "f16c", "vaes", "vpclmulqdq"} & set(hidden)
    assert not [name for name in hidden if name.startswith(("sse", "fast-", "cmov"))]


def test_nothing_is_hidden_when_the_cpu_reports_everything(tmp_path):
    features = tvm.target.codegen.llvm_get_cpu_features(
        tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})
    )
    # cpuinfo spells some features with underscores (avx512_vnni, sse4_2)
    spelled = " ".join(str(name).replace("avx512vnni", "avx512_vnni") for name in features)
    flags = host_cpu_flags(_cpuinfo(tmp_path, spelled))
    assert hidden_cpu_features("znver4", flags) == []


def test_without_cpuinfo_nothing_is_turned_off(tmp_path):
    assert host_cpu_flags(tmp_path / "missing") is None
    assert hidden_cpu_features("znver4", None) == []


def test_host_target_compiles_code_that_runs_here():
    target = host_target()
    assert str(target.attrs["mcpu"]) and int(target.attrs["num-cores"]) >= 1
    mod = resolve_one("dense:16,16,16").build()
    lib = tvm.compile(mod, target=target)
    rng = np.random.default_rng(0)
    a, b = rng.random((16, 16), dtype="float32"), rng.random((16, 16), dtype="float32")
    args = [tvm.runtime.tensor(a), tvm.runtime.tensor(b), tvm.runtime.empty((16, 16), "float32")]
    lib["main"](*args)  # an instruction the CPU lacks would kill the process here (SIGILL)
    np.testing.assert_allclose(args[-1].numpy(), a @ b.T, rtol=1e-5)


def test_target_key_tells_a_masked_cpu_apart():
    full = tvm.target.Target({"kind": "llvm", "mcpu": "znver4", "num-cores": 2})
    masked = tvm.target.Target(
        {"kind": "llvm", "mcpu": "znver4", "mattr": ["-avx512f"], "num-cores": 2}
    )
    assert target_key(full) == "llvm-znver4-2c"
    assert target_key(masked) == "llvm-znver4-noavx512-2c"


def test_bad_target_is_a_clear_error():
    with pytest.raises(TargetError, match="JSON target dict"):
        parse_target("llvm -mcpu=znver4")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "llvm", "mcpu": "notacpu", "num-cores": 2}, "unknown mcpu 'notacpu'"),
        ({"kind": "llvm", "mcpu": "skylake-avx51", "num-cores": 2}, "'skylake-avx512'"),
        ({"kind": "llvm", "mcpu": "skylake", "num-cores": 0}, "num-cores must be a positive"),
        ({"kind": "cuda"}, "target kind 'cuda' is not supported"),
        ({"kind": "c"}, "target kind 'c' is not supported"),
    ],
)
def test_targets_ms_meta_cannot_tune_for_are_refused(config, message):
    for value in (config, json.dumps(config)):
        with pytest.raises(TargetError, match=re.escape(message)) as err:
            parse_target(value)
        assert "\n" not in str(err.value)


def test_a_ready_target_object_is_checked_as_well():
    with pytest.raises(TargetError, match="unknown mcpu 'notacpu'"):
        parse_target(tvm.target.Target({"kind": "llvm", "mcpu": "notacpu", "num-cores": 2}))


@pytest.mark.parametrize("mcpu", ["native", "znver4", "icelake-server", "skylake-avx512"])
def test_known_cpus_and_native_are_accepted(mcpu):
    target = parse_target({"kind": "llvm", "mcpu": mcpu, "num-cores": 2})
    assert check_target(target) is target


def test_cpus_of_another_triple_are_checked_against_that_triple():
    arm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 2}
    assert parse_target({**arm, "mcpu": "neoverse-v1"}).kind.name == "llvm"
    with pytest.raises(TargetError, match="aarch64-linux-gnu"):
        parse_target({**arm, "mcpu": "znver4"})
