"""Redis (the broker) bounced three times while runs are in flight, then new runs: the same worker
process must carry on (none is restarted by this scenario). Records which processes are still the
ones the stack started."""

from __future__ import annotations

import time

import pytest

from tests.chaos.report import NOTES
from tests.chaos.test_chaos import STREAMING, join, readers, record

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(600)
def test_redis_bounced_three_times_with_runs_in_flight_then_new_runs(stack):
    pids = {name: proc.popen.pid for name, proc in stack.procs.items()}
    in_flight: list[str] = []
    for bounce in range(3):
        run_ids = stack.start_runs(4, STREAMING, f"bounce {bounce}")
        in_flight += run_ids
        time.sleep(2.0)
        stack.redis.stop()
        time.sleep(3.0)
        stack.redis.start()
        time.sleep(3.0)
    alive = {name: proc.popen.poll() is None for name, proc in stack.procs.items()}
    after = stack.start_runs(4, "[[tokens:3]]", "after the bounces")
    threads, streams = readers(stack, after)
    states = stack.wait_finished(in_flight + after, timeout=180)
    join(threads)
    same = {name: stack.procs[name].popen.pid == pid for name, pid in pids.items()}
    NOTES.append(f"Redis bounced 3x: processes alive after {alive}, same processes {same} "
                 "(restarted by the test: none)")
    record("Redis bounced 3x, then new runs", states, streams, in_flight + after, stack)
    assert all(alive.values()), f"a process died: {alive}"
    assert all(states[r]["status"] == "succeeded" for r in after), "new work after the bounces"
