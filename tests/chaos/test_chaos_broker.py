"""Redis (the broker) bounced three times while runs are in flight, then new runs: the same worker
process must carry on: no program dies (supervisord would start it again, which the row shows and
the scenario fails on), and the test restarts none of them."""

from __future__ import annotations

import time

import pytest

from tests.chaos.report import NOTES
from tests.chaos.test_chaos import STREAMING, join, readers, record, restarted_by

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(600)
def test_redis_bounced_three_times_with_runs_in_flight_then_new_runs(stack):
    before = stack.pids()
    in_flight: list[str] = []
    for bounce in range(3):
        run_ids = stack.start_runs(4, STREAMING, f"bounce {bounce}")
        in_flight += run_ids
        time.sleep(2.0)
        stack.redis.stop()
        time.sleep(3.0)
        stack.redis.start()
        time.sleep(3.0)
    alive = {name: bool(pid) for name, pid in stack.pids().items()}
    after = stack.start_runs(4, "[[tokens:3]]", "after the bounces")
    threads, streams = readers(stack, after)
    states = stack.wait_finished(in_flight + after, timeout=180)
    join(threads)
    cell, by_supervisor = restarted_by(stack, before, ("Redis ×3",))
    NOTES.append(f"Redis bounced 3x: programs running after the bounces {alive}; started again by supervisord: "
                 f"{by_supervisor or 'none'}")
    record("Redis bounced 3x, then new runs", states, streams, in_flight + after, stack, cell)
    assert all(alive.values()) and by_supervisor == [], f"a program died: {alive}, restarted: {by_supervisor}"
    assert all(states[r]["status"] == "succeeded" for r in after), "new work after the bounces"
