"""Build llama-cpp-python from its locked sdist with portable CPU flags, keep the wheel in a
project-local wheelhouse named by those flags, and install it: ``python scripts/build_llama.py``.

Why: a wheel compiled with ``GGML_NATIVE=ON`` (llama.cpp's default) uses every instruction the build
machine reports, AMX included; on a kernel that has not granted AMX tile state to the process, the
first real matrix multiply dies with a general protection fault in ``libggml-cpu.so``. And pip caches
a built wheel by package version only, so a wheel built with other flags would be reused silently.

What it does:

1. Reads ``requirements/llama.txt`` (``llama-cpp-python==V`` and the sdist's sha256).
2. Chooses the CPU level from ``/proc/cpuinfo`` (:func:`cpu_level`): ``x86-64-v3`` (AVX, AVX2, FMA,
   F16C) when the CPU has all four, else ``x86-64-v2`` (SSE4.2 only). Never native, never AVX-512,
   never AMX: those need kernel permission or differ between machines of one kind.
3. The wheelhouse folder is ``<var>/wheelhouse/llama-cpp-python-V-<level>-<sha of the CMake args>``:
   an existing wheel there was built with exactly these flags and is reused; any other is never
   looked at. The build runs with ``--no-cache-dir`` and ``--require-hashes``.
4. Installs the wheel with ``--no-deps`` (its dependencies come from the lock).

Exit status: 0 when the wheel is installed, else pip's status (the log is
``<var>/llama-cpp-build.log``). Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "llama.txt"

# Off whatever the CPU: not portable between machines of one kind, or needing kernel permission.
ALWAYS = ["-DGGML_NATIVE=OFF", "-DGGML_AVX512=OFF", "-DGGML_AVX512_VBMI=OFF", "-DGGML_AVX512_VNNI=OFF",
          "-DGGML_AVX512_BF16=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
          "-DGGML_AVX_VNNI=OFF", "-DGGML_BMI2=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
LEVELS = {
    "x86-64-v3": ["-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"],
    "x86-64-v2": ["-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_F16C=OFF"],
}
V3_FLAGS = {"avx", "avx2", "fma", "f16c"}


def cpu_level(cpuinfo: str) -> str:
    """``"x86-64-v3"`` when the first ``flags`` line of ``cpuinfo`` (``/proc/cpuinfo``'s text) lists
    avx, avx2, fma and f16c, else ``"x86-64-v2"``."""
    match = re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    flags = set(match.group(1).split()) if match else set()
    return "x86-64-v3" if flags >= V3_FLAGS else "x86-64-v2"


def cmake_args(level: str) -> str:
    """The ``CMAKE_ARGS`` for ``level`` (a key of :data:`LEVELS`)."""
    return " ".join(ALWAYS + LEVELS[level])


def locked_version(lock_text: str) -> str:
    """The version pinned in ``requirements/llama.txt``; ValueError when there is none."""
    match = re.search(r"^llama-cpp-python==([\w.]+)", lock_text, re.MULTILINE)
    if not match:
        raise ValueError(f"{LOCK} pins no llama-cpp-python version (run `make lock`)")
    return match.group(1)


def wheelhouse(var: Path, version: str, level: str) -> Path:
    """``var/wheelhouse/llama-cpp-python-<version>-<level>-<12 hex of sha256(CMAKE_ARGS)>``."""
    tag = hashlib.sha256(cmake_args(level).encode()).hexdigest()[:12]
    return var / "wheelhouse" / f"llama-cpp-python-{version}-{level}-{tag}"


def build(folder: Path, level: str, log: Path) -> int:
    """Build the wheel into ``folder`` (pip wheel of the locked sdist, hashes required, no cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CMAKE_ARGS": cmake_args(level), "FORCE_CMAKE": "1",
           "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
    print(f">>> Building llama-cpp-python ({level}: {env['CMAKE_ARGS']}) into {folder}", flush=True)
    pip = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-cache-dir", "--require-hashes",
           "--no-binary", "llama-cpp-python", "-r", str(LOCK), "-w", str(folder)]
    progress = [sys.executable, str(ROOT / "scripts" / "with_progress.py"), "--label", "llama-cpp-python build",
                "--log", str(log), "--"]
    return subprocess.call(progress + pip, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--var", type=Path, default=Path(os.environ.get("ARBOR_VAR_DIR") or ROOT / "var"))
    parser.add_argument("--level", choices=sorted(LEVELS), help="override the level read from /proc/cpuinfo")
    parser.add_argument("--print-folder", action="store_true", help="print the wheelhouse folder and exit")
    args = parser.parse_args(argv)
    level = args.level or cpu_level(Path("/proc/cpuinfo").read_text(errors="replace"))
    folder = wheelhouse(args.var, locked_version(LOCK.read_text()), level)
    if args.print_folder:
        print(folder)
        return 0
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    if wheels:
        print(f">>> Reusing {wheels[-1]} (built with these flags)", flush=True)
    else:
        status = build(folder, level, args.var / "llama-cpp-build.log")
        wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
        if status or not wheels:
            print(f"llama-cpp-python failed to build (status {status}); see {args.var / 'llama-cpp-build.log'}")
            return status or 1
    return subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
                            str(wheels[-1])])


if __name__ == "__main__":
    sys.exit(main())
