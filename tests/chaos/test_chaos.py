"""Fault scenarios against the chaos stack (Arbor under supervisord with config/supervisord.conf; its
own PostgreSQL, Redis and model server), each asserting: no run stuck after the deadline, at most
one answer per run, every failed run has a reason, every SSE client receives ``done``. Each row says
which processes were started again and by whom: supervisord (a program the scenario killed, or one
that died on its own, which fails the scenario) or the test (PostgreSQL, Redis, the model server).
The first check: the idle stack prints nothing for a minute."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.chaos.report import NOTES, ROWS

pytestmark = pytest.mark.chaos

STREAMING = "[[tokens:40]] [[delay:0.1]]"  # ~4 s per answer


def restarted_by(stack, before: dict[str, int], by_test: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """The "restarted by" cell, and the programs supervisord started again since ``before``."""
    after = stack.pids()
    by_supervisor = sorted(name for name, pid in before.items() if after.get(name) != pid)
    parts = ([f"supervisor: {', '.join(by_supervisor)}"] if by_supervisor else []) + (
        [f"test: {', '.join(by_test)}"] if by_test else [])
    return "; ".join(parts) or "none", by_supervisor


def record(name: str, states: dict, streams: dict, run_ids: list[str], stack, restarted: str = "none") -> None:
    succeeded = sum(1 for r in run_ids if states.get(r, {}).get("status") == "succeeded")
    failed = [r for r in run_ids if states.get(r, {}).get("status") == "failed"]
    failed_with_reason = sum(1 for r in failed if (states[r].get("error") or {}).get("message"))
    stuck = sum(1 for r in run_ids if states.get(r, {}).get("status") not in ("succeeded", "failed", "cancelled"))
    duplicated = stack.duplicated(run_ids)
    done = sum(1 for r in streams.values() if r["done"])
    reasons = "; ".join(sorted({(states[r].get("error") or {}).get("message", "")[:40] for r in failed}))
    failed_cell = f"{failed_with_reason}/{len(failed)}" + (f" ({reasons})" if reasons else "")
    ROWS.append([name, len(run_ids), succeeded, failed_cell, stuck, duplicated, f"{done}/{len(streams)}", restarted])
    assert stuck == 0, f"{name}: {stuck} runs stuck"
    assert duplicated == 0, f"{name}: answers written twice"
    assert failed_with_reason == len(failed), f"{name}: a failed run without a readable reason"
    assert done == len(streams), f"{name}: {len(streams) - done} SSE clients never got done"


def readers(stack, run_ids: list[str], timeout: float = 90) -> tuple[list[threading.Thread], dict]:
    results: dict = {}
    threads = [threading.Thread(target=stack.read_stream, args=(r, results, timeout), daemon=True) for r in run_ids]
    for thread in threads:
        thread.start()
    return threads, results


def join(threads: list[threading.Thread], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))


@pytest.mark.timeout(300)
def test_the_idle_stack_prints_nothing_for_a_minute(stack):
    """`make run`'s programs under supervisord (without the local model), idle: 0 lines in 60 s."""
    time.sleep(10)  # start-up lines (the banner, workers' ready) are over
    before = stack.output()
    time.sleep(60)
    lines = stack.output()[len(before):].splitlines()
    NOTES.append(f"idle minute under supervisord (web, runs, worker, beat, banner): {len(lines)} lines printed"
                 + (f": {lines[:5]}" if lines else ""))
    assert lines == []


def test_runs_worker_killed_mid_stream_is_restarted_by_supervisord(stack):
    """20 streaming runs; SIGKILL the runs worker (its process group); supervisord starts it again
    and it and the reaper finish every run exactly once."""
    before = stack.pids()
    run_ids = stack.start_runs(20, STREAMING, "kill")
    threads, streams = readers(stack, run_ids)
    time.sleep(2.0)
    stack.wait_restarted("runs", stack.kill_program("runs"))
    states = stack.wait_finished(run_ids, timeout=90)
    join(threads)
    cell, by_supervisor = restarted_by(stack, before)
    record("runs worker SIGKILL mid-stream (20 runs)", states, streams, run_ids, stack, cell)
    assert by_supervisor == ["runs"]
    assert all(states[r]["status"] == "succeeded" for r in run_ids)


def test_redis_restarted_under_streaming_and_queued_runs(stack):
    """20 runs on a worker of 16 threads (16 stream, 4 wait); Redis (broker, streams, cache) is
    down for 5 s and comes back empty; every run still succeeds once, no program died."""
    before = stack.pids()
    run_ids = stack.start_runs(20, STREAMING, "redis")
    threads, streams = readers(stack, run_ids)
    time.sleep(2.0)
    stack.redis.stop()
    time.sleep(5.0)
    stack.redis.start()
    states = stack.wait_finished(run_ids, timeout=120)
    join(threads)
    cell, by_supervisor = restarted_by(stack, before, ("Redis",))
    record("Redis down 5 s (16 streaming, 4 queued)", states, streams, run_ids, stack, cell)
    assert by_supervisor == [], "a program died with Redis"
    assert all(states[r]["status"] == "succeeded" for r in run_ids)


def test_postgres_restarted_under_streaming_runs(stack):
    """10 runs stream with SSE clients connected; PostgreSQL restarts; the runs finish, the
    clients get ``done``, and new streams open normally afterwards."""
    before = stack.pids()
    run_ids = stack.start_runs(10, STREAMING, "pg")
    threads, streams = readers(stack, run_ids)
    time.sleep(1.5)
    stack.pg.stop()
    time.sleep(2.0)
    stack.pg.start()
    states = stack.wait_finished(run_ids, timeout=90)
    join(threads)
    after = stack.start_runs(3, "[[tokens:5]]", "pg-after")
    after_threads, after_streams = readers(stack, after)
    after_states = stack.wait_finished(after, timeout=30)
    join(after_threads, 30)
    cell, by_supervisor = restarted_by(stack, before, ("PostgreSQL",))
    record("PostgreSQL restart (10 streaming, then 3 new)", {**states, **after_states},
           {**streams, **after_streams}, run_ids + after, stack, cell)
    assert by_supervisor == []
    assert all(s["status"] == "succeeded" for s in after_states.values())


def _api_during_outage(stack) -> tuple[int, float, str]:
    started = time.monotonic()
    try:
        response = httpx.get(f"{stack.base}/api/sessions", headers=stack.auth, timeout=30)
        return response.status_code, time.monotonic() - started, response.headers.get("content-type", "")
    except httpx.HTTPError as exc:
        return 0, time.monotonic() - started, type(exc).__name__


@pytest.mark.timeout(400)
def test_a_60_second_postgres_outage(stack):
    """10 runs stream with SSE clients; PostgreSQL is down for 60 s. The API answers a quick JSON
    503 meanwhile; every client gets ``done``; the 10 runs succeed (their answers wait in the
    worker until the database is back: core.outage); no program dies and no worker task raises;
    the workers take new runs afterwards."""
    before, mark = stack.pids(), len(stack.output())
    run_ids = stack.start_runs(10, STREAMING, "pg-outage")
    threads, streams = readers(stack, run_ids, timeout=240)
    time.sleep(1.5)
    stack.pg.stop()
    time.sleep(5)
    status, seconds, kind = _api_during_outage(stack)
    time.sleep(55)
    stack.pg.start()
    recovered = time.monotonic()
    states = stack.wait_finished(run_ids, timeout=120)
    join(threads, 240)
    waited = time.monotonic() - recovered
    after = stack.start_runs(5, "[[tokens:5]]", "pg-outage-after")
    after_threads, after_streams = readers(stack, after)
    after_states = stack.wait_finished(after, timeout=60)
    join(after_threads, 60)
    raised = re.findall(r"Task (\S+?)\[[^]]+\] raised unexpected: (\w+)", stack.output()[mark:])
    cell, by_supervisor = restarted_by(stack, before, ("PostgreSQL",))
    NOTES.append(f"PostgreSQL down 60 s: GET /api/sessions during it answered {status} ({kind}) in {seconds:.1f} s; "
                 f"worker tasks that raised: "
                 f"{dict(Counter(raised))}; runs started {waited:.0f} s after recovery: "
                 f"{sum(s['status'] == 'succeeded' for s in after_states.values())}/{len(after)} succeeded")
    record("PostgreSQL down 60 s (10 streaming, then 5 new)", {**states, **after_states},
           {**streams, **after_streams}, run_ids + after, stack, cell)
    assert by_supervisor == []
    assert status == 503 and "json" in kind and seconds < 10
    assert all(s["status"] == "succeeded" for s in after_states.values())
    assert all(states[r]["status"] == "succeeded" for r in run_ids), "a run in flight failed with the outage"
    assert raised == [], f"worker tasks raised: {raised}"


def test_backlog_does_not_flood_the_broker(stack):
    """50 runs of 8 s behind 16 threads (about 4 rounds); the reaper runs every 2 s and re-sends runs
    queued for over 8 s: the broker's run queue stays within 2 × the runs."""
    before = stack.pids()
    run_ids = stack.start_runs(50, "[[tokens:10]] [[delay:0.8]]", "backlog")
    longest = 0
    until = time.monotonic() + 20  # 2.5 × the requeue wait, as 5 minutes are to 120 s
    while time.monotonic() < until:
        longest = max(longest, stack.redis.queue_length("runs"))
        time.sleep(0.5)
    states = stack.wait_finished(run_ids, timeout=150)
    cell, by_supervisor = restarted_by(stack, before)
    record(f"backlog of 50 (longest queue {longest})", states, {}, run_ids, stack, cell)
    assert by_supervisor == []
    assert longest <= 2 * len(run_ids), f"the broker queue reached {longest} messages for {len(run_ids)} runs"
    assert all(states[r]["status"] == "succeeded" for r in run_ids), "waiting in the queue does not count"


def test_hung_model_fails_within_the_deadline(stack):
    """The model sends headers and then nothing: each run fails with the reason well within
    the run's deadline, retried once (3 s read timeout here)."""
    before = stack.pids()
    started = time.monotonic()
    run_ids = stack.start_runs(3, "[[hang]]", "hang")
    threads, streams = readers(stack, run_ids)
    states = stack.wait_finished(run_ids, timeout=40)
    join(threads, 40)
    cell, by_supervisor = restarted_by(stack, before)
    record("hung model", states, streams, run_ids, stack, cell)
    assert by_supervisor == []
    assert all(states[r]["status"] == "failed" for r in run_ids)
    assert time.monotonic() - started < 25


def test_model_server_killed_mid_answer(stack):
    """6 runs stream from the model server (the scripted one, a process of its own); it is SIGKILLed
    mid-answer and started again by the test 3 s later (under `make run` supervisord restarts the
    local model). Each run ends once (retried and succeeded, or failed with its reason), every
    client gets ``done``, no Arbor program dies, and new runs succeed."""
    before = stack.pids()
    run_ids = stack.start_runs(6, "[[tokens:60]] [[delay:0.1]]", "model-kill")
    threads, streams = readers(stack, run_ids)
    time.sleep(2.0)
    stack.model.kill()
    time.sleep(3.0)
    stack.model.start()
    states = stack.wait_finished(run_ids, timeout=90)
    join(threads)
    after = stack.start_runs(3, "[[tokens:5]]", "model-after")
    after_states = stack.wait_finished(after, timeout=30)
    cell, by_supervisor = restarted_by(stack, before, ("model server",))
    record("model server SIGKILL mid-answer (6 streaming, then 3 new)", {**states, **after_states}, streams,
           run_ids + after, stack, cell)
    assert by_supervisor == []
    assert all(s["status"] == "succeeded" for s in after_states.values())
