"""The local model's build: portable CPU flags chosen from /proc/cpuinfo, a wheelhouse named by the
flags, and an installed library that holds no AMX or AVX-512 instruction."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import build_llama  # noqa: E402

V3 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f amx_tile amx_int8\n"
OLD = "processor\t: 0\nflags\t\t: fpu sse4_2 avx\n"


def test_the_level_comes_from_the_cpu_flags():
    assert build_llama.cpu_level(V3) == "x86-64-v3"
    assert build_llama.cpu_level(OLD) == "x86-64-v2"
    assert build_llama.cpu_level("") == "x86-64-v2"


@pytest.mark.parametrize("level", sorted(build_llama.LEVELS))
def test_never_native_never_amx_never_avx512(level):
    args = build_llama.cmake_args(level).split()
    assert "-DGGML_NATIVE=OFF" in args
    for name in ("AMX_TILE", "AMX_INT8", "AMX_BF16", "AVX512"):
        assert f"-DGGML_{name}=OFF" in args
    assert not [a for a in args if a.endswith("=ON") and ("AMX" in a or "AVX512" in a or "NATIVE" in a)]


def test_the_wheelhouse_is_named_by_version_level_and_flags(tmp_path):
    v3 = build_llama.wheelhouse(tmp_path, "0.3.36", "x86-64-v3")
    v2 = build_llama.wheelhouse(tmp_path, "0.3.36", "x86-64-v2")
    assert v3 != v2 and v3.parent == tmp_path / "wheelhouse"
    assert v3.name.startswith("llama-cpp-python-0.3.36-x86-64-v3-")
    assert build_llama.locked_version(build_llama.LOCK.read_text()) in build_llama.LOCK.read_text()
    with pytest.raises(ValueError):
        build_llama.locked_version("numpy==2.0\n")


@pytest.mark.local_model
def test_the_installed_cpu_library_has_no_amx_or_avx512_instruction():
    """Disassembles libggml-cpu: ``ldtilecfg``/``tdpb*`` (AMX) or ``zmm`` registers (AVX-512) would
    fault on a kernel that has not granted them."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed")
    package = Path(importlib.util.find_spec("llama_cpp").origin).parent
    libraries = sorted(package.rglob("libggml-cpu*.so*")) or sorted(package.rglob("libggml*.so*"))
    assert libraries, f"no ggml library under {package}"
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(libraries[0])], capture_output=True, text=True,
                          check=True).stdout
    assert "vfmadd" in text or "vaddps" in text, "the disassembly holds no vector instruction at all"
    for marker in ("ldtilecfg", "tdpbssd", "tdpbf16ps", "%zmm"):
        assert marker not in text, f"{libraries[0].name} uses {marker}"
