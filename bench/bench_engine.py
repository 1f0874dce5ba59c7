"""``bench engine``: many runs at once through the real pipeline (issue 11).

A real Celery worker (the threads pool on the run queue, as ``make run`` starts it), uvicorn with
``ARBOR_WEB_WORKERS`` processes (default 2), and one asyncio client per run that POSTs the run and
reads its SSE stream to ``done`` (reconnecting with ``Last-Event-ID`` if the stream ends early).
The scripted model, in a process of its own, answers 30 tokens 0.1 s apart (~3 s): N =
``ARBOR_BENCH_ENGINE_SIZES`` runs at once (10, 50, 100, 200) with ``ARBOR_WEB_WORKERS`` web processes
and ``ARBOR_RUN_CONCURRENCY`` run threads, then ``ARBOR_BENCH_ENGINE_MATRIX_RUNS`` runs (100; 0: not
measured) at 1 and 2 web processes × 64 and 128 run threads. Each row gives the load average (the
machine is shared). Then Arbor's own time per turn against a model that answers at once, at depth 10
and 500 (``ARBOR_BENCH_ENGINE_TURNS=0`` leaves that out).

On PostgreSQL + Redis run with ``DATABASE_URL`` and ``CELERY_BROKER_URL``; without them it measures
the embedded default (SQLite, the filesystem broker, database streams).
"""

from __future__ import annotations

import asyncio
import os
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

from accounts.models import ApiToken
from bench.harness import Bench, load_average, ms, percentile
from conversations.models import Run, RunStatus
from memory.models import Compaction, CompactionStatus
from tests.support.crowd import burst
from tests.support.factories import SessionFactory, UserFactory, build_chain
from tests.support.pg import PeakConnections
from tests.support.processes import Proc, start_model_server, start_web, start_worker

MODEL_SCRIPT = "[[tokens:30]] [[delay:0.1]]"  # ~3 s per answer
SIZES = [int(n) for n in os.environ.get("ARBOR_BENCH_ENGINE_SIZES", "10,50,100,200").split(",")]
# The runs of the table by web processes and run threads (0: no such table), and its configurations.
MATRIX_RUNS = int(os.environ.get("ARBOR_BENCH_ENGINE_MATRIX_RUNS", "100"))
MATRIX = [(1, 64), (1, 128), (2, 64), (2, 128)]


class _Server:  # what child_env/start_worker need of the model server
    base_url = ""
    proc: Proc | None = None  # the scripted model's own process


def _family(root_pid: int) -> dict[int, tuple[int, float]]:
    """``{pid: (rss KiB, CPU seconds user+system)}`` of a process and all its descendants (/proc)."""
    parents: dict[int, int] = {}
    facts: dict[int, tuple[int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat[1])
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        facts[pid] = (rss, (int(stat[11]) + int(stat[12])) / tick)  # utime, stime (fields 14, 15)
    family, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in family:
                family.add(pid)
                frontier.append(pid)
    return {pid: facts[pid] for pid in family if pid in facts}


def _rss_mb(root_pid: int) -> float:
    """Resident memory of a process and all its descendants, MiB."""
    return sum(rss for rss, _ in _family(root_pid).values()) / 1024


def _cpu_seconds(root_pid: int) -> float:
    """CPU time (user + system) used so far by a process and its live descendants, seconds."""
    return sum(cpu for _, cpu in _family(root_pid).values())


def _own_cpu_seconds() -> float:
    """CPU time of this process: the asyncio clients."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _start(log_dir: Path, web_workers: int, threads: int) -> tuple[Proc, Proc, str]:
    worker = start_worker(_Server, log_dir, name="bench-runs", concurrency=threads,
                          ARBOR_RUN_CONCURRENCY=str(threads))
    web, base = start_web(_Server, log_dir, workers=web_workers)
    return worker, web, base


def _warm_up(user, token: str, base: str) -> None:
    """10 quick runs at once, not measured: fresh processes open their database and broker
    connections and threads on their first requests (the cold row of :func:`bench_concurrent`
    measures that once)."""
    sessions = [SessionFactory(owner=user) for _ in range(10)]
    asyncio.run(burst(base, token, [s.pk for s in sessions], "[[tokens:3]] [[delay:0]] warm-up"))


def _burst_row(n: int, user, token: str, base: str, worker: Proc, web: Proc) -> list:
    """``n`` runs at once (POST, then the SSE stream to ``done``): one row of the tables below."""
    postgres = connection.vendor == "postgresql"
    sessions = [SessionFactory(owner=user) for _ in range(n)]
    sampler = PeakConnections() if postgres else None
    if sampler:
        sampler.start()
    model_pid = _Server.proc.popen.pid
    cpu_before = (_cpu_seconds(web.popen.pid), _cpu_seconds(worker.popen.pid), _cpu_seconds(model_pid),
                  _own_cpu_seconds())
    load = os.getloadavg()[0]
    began = time.monotonic()
    results = asyncio.run(burst(base, token, [s.pk for s in sessions], f"{MODEL_SCRIPT} n{n}"))
    all_done = time.monotonic() - began
    cpu = [after - before for after, before in zip(
        (_cpu_seconds(web.popen.pid), _cpu_seconds(worker.popen.pid), _cpu_seconds(model_pid), _own_cpu_seconds()),
        cpu_before, strict=True)]
    peak = sampler.stop() if sampler else "n/a"
    runs = Run.objects.filter(session__in=sessions)
    waits = [(r.started_at - r.created_at).total_seconds() for r in runs if r.started_at]
    firsts = [r["first"] for r in results if r["first"] is not None]
    errors = sum(1 for r in results if r["error"] or r["status"] != "succeeded")
    stuck = runs.exclude(status=RunStatus.SUCCEEDED).count()
    if stuck:
        print(f"  n={n}: {stuck} runs not succeeded", flush=True)
    kinds = Counter(r["error"] or f"done: {r['status'] or 'none'}" for r in results
                    if r["error"] or r["status"] != "succeeded")
    if kinds:  # what the clients saw (a stream error is counted even when a reconnect then got done)
        print(f"  n={n}: errors seen by the clients: {dict(kinds)}", flush=True)
    return [
        n, f"{all_done:.1f}", ms(percentile(firsts, 50)) if firsts else "-",
        ms(percentile(firsts, 95)) if firsts else "-", ms(max(firsts)) if firsts else "-",
        ms(percentile(waits, 50)) if waits else "-", sum(1 for r in results if r["reconnects"]), errors,
        ms(percentile([r["post"] for r in results], 95)), peak, f"{_rss_mb(worker.popen.pid):.0f}",
        " / ".join(f"{c:.1f}" for c in cpu), f"{100 * sum(cpu) / (all_done * (os.cpu_count() or 1)):.0f}",
        f"{load:.1f} → {os.getloadavg()[0]:.1f}",
    ]


HEADERS = ["runs", "all done s", "first delta p50 ms", "p95 ms", "max ms", "queue wait p50 ms",
           "drops (streams cut before done)", "errors", "POST p95 ms", "peak PG connections", "worker RSS MiB",
           "CPU s: web / worker / model / clients", "CPU busy % of all cores", "load average (1 min) before → after"]
GOALS = ("goals on 2 cores: 100 runs all done ≤ 6 s, first delta p95 ≤ 1.5 s, POST p95 ≤ 300 ms; "
         "200 runs 0 errors, 0 drops, ≤ 60 PG connections")


def bench_concurrent(bench: Bench, user, token: str, log_dir: Path) -> None:
    """N = ``SIZES`` runs at once with the configured web processes and run threads; the first
    size twice: right after the processes started (cold), then as every other row, warm."""
    web_workers, threads = int(os.environ["ARBOR_WEB_WORKERS"]), settings.ARBOR_RUN_CONCURRENCY
    worker, web, base = _start(log_dir, web_workers, threads)
    try:
        rows = [[f"{SIZES[0]}, cold (fresh processes)", *_burst_row(SIZES[0], user, token, base, worker, web)[1:]]]
        rows += [_burst_row(n, user, token, base, worker, web) for n in SIZES]
    finally:
        web.stop()
        worker.stop()
    bench.table(
        f"Concurrent runs, model ~3 s per answer ({connection.vendor}, stream "
        f"{settings.ARBOR_STREAM_URL.split(':')[0]}, {threads} run threads, {web_workers} web processes; "
        f"{load_average()}; {GOALS})", HEADERS, rows)


def bench_process_matrix(bench: Bench, user, token: str, log_dir: Path) -> None:
    """``MATRIX_RUNS`` runs at once with 1 and 2 web processes and 64 and 128 run threads, each
    configuration's processes warmed up first (:func:`_warm_up`)."""
    rows = []
    for web_workers, threads in MATRIX:
        worker, web, base = _start(log_dir, web_workers, threads)
        try:
            _warm_up(user, token, base)
            rows.append([f"{web_workers} web / {threads} threads", *_burst_row(MATRIX_RUNS, user, token, base,
                                                                               worker, web)])
        finally:
            web.stop()
            worker.stop()
    bench.table(f"{MATRIX_RUNS} runs at once by web processes and run threads ({load_average()}; {GOALS})",
                ["web processes / run threads", *HEADERS], rows)


def _model_seconds(marker: str) -> list[float]:
    """Seconds the scripted model's process spent on each chat request whose last message holds
    ``marker``: from the parsed request to its ``[DONE]`` sent (its own JSON parsing, token counting
    and 160 chunks written; the request's upload and parsing stay on Arbor's side)."""
    records = httpx.get(f"{_Server.base_url.removesuffix('/v1')}/_requests", timeout=60).json()["requests"]
    return [r["done_sent"] - r["received"] for r in records
            if r.get("done_sent") and marker in str((r["body"].get("messages") or [{}])[-1].get("content"))]


def bench_turn_overhead(bench: Bench, user, token: str, base: str) -> None:
    """POST → done with a model that answers at once (160 tokens), at depth 10 and 500; the
    server-side parts from the run's timestamps (created → started → first token → finished), and
    Arbor's own share of them: that sum less the model process's own time per request."""
    rows = []
    for depth, compacted in ((10, False), (500, False), (500, True)):
        session = SessionFactory(owner=user)
        chain = build_chain(session, depth)
        if compacted:  # as the default policy leaves a long conversation: a summary, then the turns since
            Compaction.objects.create(run=chain[-20], memory_id=chain[-20].memory_id, status=CompactionStatus.READY,
                                      from_depth=depth - 22, summary="The user asked about " + "things, " * 150)
        session.refresh_from_db()
        totals, marker = [], f"d{depth}{'c' if compacted else ''} "
        for i in range(15):
            result = asyncio.run(burst(base, token, [session.pk], f"[[tokens:160]] [[delay:0]] {marker}{i}"))[0]
            totals.append(result["done"])
        runs = list(Run.objects.filter(session=session, depth__gt=depth).order_by("created_at"))
        queue = [(r.started_at - r.created_at).total_seconds() for r in runs]
        to_first = [(r.first_token_at - r.started_at).total_seconds() for r in runs if r.first_token_at]
        to_end = [(r.finished_at - r.first_token_at).total_seconds() for r in runs if r.first_token_at]
        server = [(r.finished_at - r.created_at).total_seconds() for r in runs if r.finished_at]
        model = _model_seconds(marker)
        label = f"{depth}, a compaction 20 turns up" if compacted else depth
        rows.append([label, ms(percentile(totals, 50)), ms(percentile(queue, 50)), ms(percentile(to_first, 50)),
                     ms(percentile(to_end, 50)), ms(percentile(server, 50)), ms(percentile(model, 50)),
                     ms(percentile(server, 50) - percentile(model, 50))])
    bench.table(
        "Arbor's own time per turn (POST → done, model answers at once; server-side parts p50; goal ≤ 30 ms "
        "server side at depth 500)",
        ["depth", "POST → done p50 ms", "queue ms", "start → first token ms", "first token → finished ms",
         "created → finished ms", "model's own ms", "Arbor's own server-side ms"], rows,
    )


def bench_comparison_start(bench: Bench, user) -> None:
    """A 4-variant comparison: how far apart its variants' first tokens are (a fast model)."""
    from comparisons import services as comparisons
    from comparisons.models import VariantRun
    from tests.support.factories import RunFactory

    rows = []
    for attempt in range(5):
        session = SessionFactory(owner=user)
        branch_point = RunFactory(session=session, status=RunStatus.SUCCEEDED)
        comparison = comparisons.comparison_start(
            owner=user, session=session, branch_point=branch_point, prompt=f"[[tokens:20]] [[delay:0.01]] {attempt}",
            variants=[comparisons.VariantSpec(label=f"V{i}", model="fake-model") for i in range(4)],
        )
        run_ids = list(VariantRun.objects.filter(variant__comparison=comparison).values_list("run_id", flat=True))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Run.objects.filter(pk__in=run_ids, finished_at__isnull=True).exists():
            time.sleep(0.1)
        firsts = sorted(Run.objects.filter(pk__in=run_ids).values_list("first_token_at", flat=True))
        rows.append((firsts[-1] - firsts[0]).total_seconds())
    bench.table("A 4-variant comparison: spread of its variants' first tokens (5 comparisons)",
                ["comparisons", "spread p50 ms", "spread max ms"],
                [[len(rows), ms(percentile(rows, 50)), ms(max(rows))]])


def run(bench: Bench) -> None:
    """The scripted model runs in a process of its own here: in the bench's process it would share
    one interpreter lock with the 100–200 clients, and its CPU would be counted as theirs."""
    os.environ.setdefault("ARBOR_WEB_WORKERS", "2")
    user = UserFactory()
    token = ApiToken.issue(user=user)[1]
    log_dir = Path(tempfile.mkdtemp(prefix="arbor-bench-engine-"))
    _Server.proc, _Server.base_url = start_model_server(log_dir)
    try:
        _measure(bench, user, token, log_dir)
    finally:
        _Server.proc.stop()


def _measure(bench: Bench, user, token: str, log_dir: Path) -> None:
    bench_concurrent(bench, user, token, log_dir)
    if MATRIX_RUNS:
        bench_process_matrix(bench, user, token, log_dir)
    if os.environ.get("ARBOR_BENCH_ENGINE_TURNS", "1") != "0":
        worker, web, base = _start(log_dir, int(os.environ["ARBOR_WEB_WORKERS"]), settings.ARBOR_RUN_CONCURRENCY)
        try:
            bench_turn_overhead(bench, user, token, base)
            bench_comparison_start(bench, user)
        finally:
            web.stop()
            worker.stop()
