"""The benchmark harness: a fresh database, the scripted model server, tables printed as text.

Each ``bench/bench_*.py`` module defines ``run(bench: Bench) -> None`` and calls
``bench.table(title, headers, rows)`` for every table it measures. ``make bench`` runs them all;
``make bench BENCH_ARGS="tree ui"`` runs the named ones. Figures are wall-clock on this machine.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0–100) by linear interpolation (statistics.quantiles, 'inclusive')."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return values[0] if p <= 0 else cuts[min(98, max(0, round(p) - 1))]


def timed(fn: Callable[[], object], repeat: int = 20, warmup: int = 2) -> list[float]:
    """Seconds taken by each of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def load_average() -> str:
    """The machine's load average over 1, 5 and 15 minutes, for a table's title (the machine is shared)."""
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


@dataclass
class Bench:
    llm_base_url: str = ""
    tables: list[tuple[str, list[str], list[list]]] = field(default_factory=list)

    def table(self, title: str, headers: list[str], rows: list[list]) -> None:
        """Print a table, its title followed by the machine's load average (1, 5, 15 minutes)."""
        title = f"{title} [load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}]"
        self.tables.append((title, headers, rows))
        print(render_table(title, headers, rows), flush=True)


def render_table(title: str, headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " |"  # noqa: E731
    return "\n".join([f"\n{title}", line, fmt(headers), line, *(fmt(r) for r in cells[1:]), line])
