"""scripts/with_progress.py, the wrapper `make install-model` runs around llama-cpp-python's build
(issue 15): tried on a fake slow build that prints Ninja's step lines, pauses like a long compile
step, and then fails or succeeds. No llama.cpp is compiled here."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "with_progress.py"

# 40 Ninja steps in ~2 s, a 2.5 s "long compile step" of silence, pip's verdict, then exit(STATUS).
FAKE_BUILD = textwrap.dedent("""
    import sys, time
    status = int(sys.argv[1])
    print("Using pip 25.0", flush=True)
    print("  Running command Building wheel for llama-cpp-python (pyproject.toml)", flush=True)
    print("  *** Building project with Ninja...", flush=True)
    for i in range(1, 41):
        print(f"  [{i}/40] Building CXX object vendor/llama.cpp/src/CMakeFiles/llama.dir/llama-{i}.cpp.o", flush=True)
        for _ in range(50):
            print("  -- noise a verbose build prints", flush=True)
        time.sleep(0.05)
    time.sleep(2.5)
    print("/tmp/x.cpp:1:1: error: expected something" if status else "  Successfully installed llama-cpp-python-0.3.36")
    sys.exit(status)
""")


@pytest.fixture(autouse=True)
def _model_endpoint():
    """Overrides tests/conftest.py's autouse fixture: no model server is involved."""


def wrap(tmp_path: Path, status: int) -> tuple[int, list[str], Path]:
    fake = tmp_path / "fake_build.py"
    fake.write_text(FAKE_BUILD)
    log = tmp_path / "var" / "build.log"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--label", "llama-cpp-python build", "--log", str(log), "--every", "0.5",
         "--heartbeat", "1", "--", sys.executable, str(fake), str(status)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.stderr == ""
    return proc.returncode, proc.stdout.splitlines(), log


def test_a_slow_build_shows_steps_a_heartbeat_and_the_total_time(tmp_path):
    status, lines, log = wrap(tmp_path, 0)
    assert status == 0
    step = re.compile(r">>> llama-cpp-python build: step \d+/40 \(\d+%\), \d+ s: Building")
    steps = [line for line in lines if step.match(line)]
    # Throttled to one line per 0.5 s of a ~2 s run, and the last step is always shown.
    assert 2 <= len(steps) <= 8, lines
    assert steps[-1].startswith(">>> llama-cpp-python build: step 40/40 (100%)")
    counters = [int(re.search(r"step (\d+)/", line).group(1)) for line in steps]
    assert counters == sorted(counters)
    assert any(re.fullmatch(r">>> still compiling, \d+ s", line) for line in lines), lines
    assert "    *** Building project with Ninja..." in lines
    assert "    Successfully installed llama-cpp-python-0.3.36" in lines
    assert re.fullmatch(r">>> llama-cpp-python build: done in \d+ s", lines[-1])
    assert not any("noise" in line for line in lines)  # the 2,000 verbose lines stay in the log
    assert len(lines) < 20
    assert log.read_text().count("noise a verbose build prints") == 2000


def test_a_failed_build_keeps_its_exit_status_and_shows_its_last_lines(tmp_path):
    status, lines, log = wrap(tmp_path, 3)
    assert status == 3
    assert "    /tmp/x.cpp:1:1: error: expected something" in lines
    failed = next(i for i, line in enumerate(lines) if "FAILED (exit status 3) after" in line)
    assert lines[failed + 1:-1][-1] == "    /tmp/x.cpp:1:1: error: expected something"
    assert lines[-1] == f">>> the whole output is in {log}"


def test_the_model_server_is_built_through_the_wrapper():
    """make install-model runs scripts/build_llama.py, which runs pip wheel -v through with_progress.py."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(VENV)/.installed-model:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/build_llama.py" in recipe and "--smoke" in recipe
    build = (ROOT / "scripts" / "build_llama.py").read_text()
    assert '"with_progress.py"' in build and '"wheel", "-v"' in build


def with_progress():
    """The script as a module (it is not in a package: it runs before anything is installed)."""
    import importlib.util  # here: loaded from its path, only by the tests that need it

    spec = importlib.util.spec_from_file_location("with_progress", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("line", "step"), [
    # The shapes of llama-cpp-python 0.3.36's `pip install -v` (scikit-build-core runs `ninja -v`), shortened.
    ("  [1/193] /usr/bin/g++ -DGGML_BUILD -I/tmp/x/ggml/src -O3 -o vendor/llama.cpp/ggml/src/CMakeFiles/"
     "ggml-base.dir/ggml.cpp.o -c /tmp/x/vendor/llama.cpp/ggml/src/ggml.cpp", ("1/193 (0%)", "compiling ggml.cpp")),
    ("  [11/193] : && /usr/bin/g++ -fPIC -O3 -DNDEBUG   -shared -Wl,-soname,libggml-base.so.0 -o "
     "bin/libggml-base.so.0.25.3 vendor/llama.cpp/ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o && :",
     ("11/193 (5%)", "linking libggml-base.so.0.25.3")),
    ("  [12/193] /usr/bin/cmake -E cmake_symlink_library bin/libggml-base.so.0.25.3  bin/libggml-base.so.0 "
     "bin/libggml-base.so && :", ("12/193 (6%)", "linking libggml-base.so")),
    ("[ 42%] Building C object vendor/llama.cpp/ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o",
     ("42%", "Building C object vendor/llama.cpp/ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o")),
    ("  -- Build files have been written to: /tmp/tmpa7po4aiw/build", None),
])
def test_step_lines_of_a_real_build_are_read(line, step):
    assert with_progress().step_of(line) == step
