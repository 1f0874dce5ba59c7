"""Fault scenarios (issue 12), each against the chaos stack and each asserting: no run stuck after
the deadline, exactly one answer per succeeded run, no lost run, every SSE client receives ``done``."""

from __future__ import annotations

import threading
import time

import pytest

from tests.chaos.report import ROWS

pytestmark = pytest.mark.chaos

STREAMING = "[[tokens:40]] [[delay:0.1]]"  # ~4 s per answer


def record(name: str, states: dict, streams: dict, run_ids: list[str], stack) -> None:
    succeeded = sum(1 for r in run_ids if states.get(r, {}).get("status") == "succeeded")
    failed = [r for r in run_ids if states.get(r, {}).get("status") == "failed"]
    failed_with_reason = sum(1 for r in failed if (states[r].get("error") or {}).get("message"))
    stuck = sum(1 for r in run_ids if states.get(r, {}).get("status") not in ("succeeded", "failed", "cancelled"))
    duplicated = stack.duplicated(run_ids)
    done = sum(1 for r in streams.values() if r["done"])
    ROWS.append([name, len(run_ids), succeeded, f"{failed_with_reason}/{len(failed)}", stuck, duplicated,
                 f"{done}/{len(streams)}"])
    assert stuck == 0, f"{name}: {stuck} runs stuck"
    assert duplicated == 0, f"{name}: answers written twice"
    assert failed_with_reason == len(failed), f"{name}: a failed run without a readable reason"
    assert done == len(streams), f"{name}: {len(streams) - done} SSE clients never got done"


def readers(stack, run_ids: list[str]) -> tuple[list[threading.Thread], dict]:
    results: dict = {}
    threads = [threading.Thread(target=stack.read_stream, args=(r, results), daemon=True) for r in run_ids]
    for thread in threads:
        thread.start()
    return threads, results


def join(threads: list[threading.Thread], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))


def test_worker_group_killed_mid_stream(stack):
    """20 streaming runs; SIGKILL the worker's whole process group; a new worker and the reaper
    finish every run exactly once."""
    run_ids = stack.start_runs(20, STREAMING, "kill")
    threads, streams = readers(stack, run_ids)
    time.sleep(2.0)
    stack.procs["worker"].kill()
    stack.start("worker")
    states = stack.wait_finished(run_ids, timeout=90)
    join(threads)
    record("worker SIGKILL mid-stream (20 runs)", states, streams, run_ids, stack)
    assert all(states[r]["status"] == "succeeded" for r in run_ids)


def test_redis_restarted_under_streaming_and_queued_runs(stack):
    """10 runs stream and 10 wait (a worker with 10 threads); Redis (broker, streams, cache) is
    down for 5 s and comes back empty; every run still succeeds once."""
    stack.restart_worker(concurrency=10)
    run_ids = stack.start_runs(20, STREAMING, "redis")
    threads, streams = readers(stack, run_ids)
    time.sleep(2.0)
    stack.redis.stop()
    time.sleep(5.0)
    stack.redis.start()
    states = stack.wait_finished(run_ids, timeout=120)
    join(threads)
    assert stack.procs["worker"].popen.poll() is None, "the worker died with Redis (it is not restarted here)"
    record("Redis down 5 s (10 streaming, 10 queued)", states, streams, run_ids, stack)
    assert all(states[r]["status"] == "succeeded" for r in run_ids)


def test_postgres_restarted_under_streaming_runs(stack):
    """10 runs stream with SSE clients connected; PostgreSQL restarts; the runs finish, the
    clients get ``done``, and new streams open normally afterwards."""
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
    record("PostgreSQL restart (10 streaming, then 3 new)", {**states, **after_states},
           {**streams, **after_streams}, run_ids + after, stack)
    assert all(s["status"] == "succeeded" for s in after_states.values())


def test_backlog_does_not_flood_the_broker(stack):
    """50 runs queued behind a slow model (2 threads, 3 s answers); the reaper runs every 2 s and
    re-sends runs queued for over 8 s: the broker's run queue stays within 2 × the runs."""
    stack.restart_worker(concurrency=2)
    run_ids = stack.start_runs(50, "[[tokens:10]] [[delay:0.3]]", "backlog")
    longest = 0
    until = time.monotonic() + 20  # 2.5 × the requeue wait, as 5 minutes are to 120 s
    while time.monotonic() < until:
        longest = max(longest, stack.redis.queue_length("runs"))
        time.sleep(0.5)
    stack.restart_worker(concurrency=32)
    states = stack.wait_finished(run_ids, timeout=120)
    record(f"backlog of 50 (longest queue {longest})", states, {}, run_ids, stack)
    assert longest <= 2 * len(run_ids), f"the broker queue reached {longest} messages for {len(run_ids)} runs"
    assert all(states[r]["status"] == "succeeded" for r in run_ids), "waiting in the queue does not count"


def test_hung_model_fails_within_the_deadline(stack):
    """The model sends headers and then nothing: each run fails with the reason well within
    ARBOR_RUN_DEADLINE_SECONDS (25 s here), retried once."""
    started = time.monotonic()
    run_ids = stack.start_runs(3, "[[hang]]", "hang")
    threads, streams = readers(stack, run_ids)
    states = stack.wait_finished(run_ids, timeout=40)
    join(threads, 40)
    record("hung model", states, streams, run_ids, stack)
    assert all(states[r]["status"] == "failed" for r in run_ids)
    assert time.monotonic() - started < 25
