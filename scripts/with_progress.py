"""Run a long build command and show that it is moving: ``python scripts/with_progress.py [options] -- CMD ...``.

Used by ``make install-model`` around ``pip install -v`` of llama-cpp-python, whose compile takes
minutes and whose verbose output is thousands of lines. The command's whole output goes to a log
file (``--log``); the console gets only:

* the build's step counter, read from the lines Ninja (``[12/345] Building CXX object ...``) and
  CMake's Makefiles (``[ 42%] Building C object ...``) print, at most one line every ``--every``
  seconds (the last step is always shown);
* scikit-build-core's phase lines (``*** Building project with Ninja...``) and pip's
  ``Successfully installed`` / ``ERROR`` lines;
* ``still compiling, N s`` whenever nothing was shown for ``--heartbeat`` seconds;
* at the end the total time (and, on failure, the last lines of the log).

Exits with the command's exit status. Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

# Ninja: "[12/345] Building CXX object ..."; CMake Makefiles: "[ 42%] Building C object ...".
NINJA_STEP = re.compile(r"\[\s*(\d+)/(\d+)\]\s*(.*)")
MAKE_STEP = re.compile(r"\[\s*(\d+)%\]\s*(.*)")
# Lines shown as they come: scikit-build-core's phases, pip's verdicts, compiler errors.
SHOWN = re.compile(r"^\s*(\*\*\* |Successfully (built|installed)|ERROR|error:|.*: error: |.*fatal error)")


def duration(seconds: float) -> str:
    """``95`` → ``"1 min 35 s"``; under a minute ``"42 s"``."""
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def step_of(line: str) -> tuple[str, str] | None:
    """``(counter, what)`` of a build step line, e.g. ``("12/345 (3%)", "Building CXX object x.o")``, else None."""
    match = NINJA_STEP.search(line)
    if match:
        done, total = int(match.group(1)), int(match.group(2))
        percent = f" ({100 * done // total}%)" if total else ""
        return f"{done}/{total}{percent}", _short(match.group(3))
    match = MAKE_STEP.search(line)
    if match:
        return f"{int(match.group(1))}%", _short(match.group(2))
    return None


def _short(what: str, limit: int = 90) -> str:
    """What a step does, in a few words: ``ninja -v`` (what pip's verbose build runs) prints the
    whole compiler command, which is shortened to the file compiled (``-c``) or linked (``-o``)."""
    what = what.strip()
    compiled = re.search(r"\s-c\s+(\S+)", what)
    linked = re.search(r"\s-o\s+(\S+)", what) or re.search(r"cmake_symlink_library(?:\s+\S+)*\s+(\S+\.so)\b", what)
    if compiled:
        what = f"compiling {Path(compiled.group(1)).name}"
    elif linked:
        what = f"linking {Path(linked.group(1)).name}"
    return what if len(what) <= limit else "…" + what[-(limit - 1):]


def _read(stream, lines: queue.Queue) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
    lines.put(None)


class Reporter:
    """Decides what of the build's output reaches the console (see the module doc)."""

    def __init__(self, label: str, *, every: float, heartbeat: float, out=sys.stdout):
        self.label, self.every, self.heartbeat, self.out = label, every, heartbeat, out
        self.started = self.last_shown = time.monotonic()
        self.last_step_shown = 0.0
        self.pending_step: tuple[str, str] | None = None  # (counter, what) of the newest step not shown

    def show(self, text: str, *, prefix: str = ">>> ") -> None:
        self.out.write(f"{prefix}{text}\n")
        self.out.flush()
        self.last_shown = time.monotonic()

    def elapsed(self) -> str:
        return duration(time.monotonic() - self.started)

    def line(self, line: str) -> None:
        step = step_of(line)
        if step is not None:
            self.pending_step = step
            if time.monotonic() - self.last_step_shown >= self.every:
                self.flush_step()
        elif SHOWN.search(line):
            self.flush_step()
            self.show(line.strip(), prefix="    ")

    def flush_step(self) -> None:
        """Show the newest step not shown yet, with the time elapsed now (so the last step of a
        phase is always seen, and a long step says how long the build has been at it)."""
        if self.pending_step is not None:
            counter, what = self.pending_step
            self.show(f"{self.label}: step {counter}, {self.elapsed()}: {what}")
            self.pending_step = None
            self.last_step_shown = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() - self.last_shown < self.heartbeat:
            return
        if self.pending_step is not None:
            self.flush_step()
        else:
            self.show(f"still compiling, {self.elapsed()}")


def run(command: list[str], *, label: str, log: Path, every: float, heartbeat: float, tail: int = 40) -> int:
    """Run ``command`` reporting its progress (see the module doc); returns its exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    reporter = Reporter(label, every=every, heartbeat=heartbeat)
    reporter.show(f"{label}: started (full output: {log})")
    last_lines: deque[str] = deque(maxlen=tail)
    lines: queue.Queue = queue.Queue()
    with open(log, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=_read, args=(proc.stdout, lines), daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=min(1.0, heartbeat))
            except queue.Empty:
                reporter.tick()
                continue
            if line is None:
                break
            log_file.write(line + "\n")
            last_lines.append(line)
            reporter.line(line)
            reporter.tick()
        status = proc.wait()
    reporter.flush_step()
    if status:
        reporter.show(f"{label}: FAILED (exit status {status}) after {reporter.elapsed()}; its last lines:")
        for line in last_lines:
            reporter.show(line, prefix="    ")
        reporter.show(f"the whole output is in {log}")
    else:
        reporter.show(f"{label}: done in {reporter.elapsed()}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="build")
    parser.add_argument("--log", type=Path, default=Path("var/build.log"), help="where the whole output goes")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between two step lines at most")
    parser.add_argument("--heartbeat", type=float, default=30.0, help="seconds of quiet before 'still compiling'")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    return run(command, label=args.label, log=args.log, every=args.every, heartbeat=args.heartbeat)


if __name__ == "__main__":
    sys.exit(main())
