"""The selective tensor-intrinsics import, in fresh interpreters (it changes sys.modules)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(*kinds: str) -> None:
    code = "\n".join(
        [
            "import sys",
            "from ms_meta.tuning.intrin import import_tensor_intrinsics",
            *(f"import_tensor_intrinsics({kind!r})" for kind in kinds),
            "from tvm.s_tir import TensorIntrin",
            "TensorIntrin.get('dot_16x4_vnni')  # an x86 intrinsic the llvm rules may use",
            "assert 'tvm.s_tir.tensor_intrin.hexagon' not in sys.modules",
        ]
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_llvm_registers_x86_intrinsics_only():
    _run("llvm")


@pytest.mark.slow
def test_cuda_then_llvm_still_registers_x86_intrinsics():
    _run("cuda", "llvm")
