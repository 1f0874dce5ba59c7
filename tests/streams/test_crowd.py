"""A crowd at once: 200 API clients each POST a run and read its SSE stream to ``done`` on one web
process and one run worker (threads enough for all of them). Every run succeeds, no stream is cut
before ``done``, and the database's connections stay bounded by the processes' pools, not by the
number of runs or open streams (≤ 60 for 200 runs)."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.db import connection

from conversations.models import Run, RunStatus
from tests.support.crowd import burst
from tests.support.factories import SessionFactory
from tests.support.pg import PeakConnections
from tests.support.processes import start_web

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

RUNS = 200


def test_200_runs_at_once_stay_within_the_connection_pools(worker_factory, llm_server, proc_log_dir, user,
                                                           api_token):
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL's connections (pg_stat_activity)")
    worker_factory(concurrency=RUNS)
    web, base = start_web(llm_server, proc_log_dir, ARBOR_RUN_QUEUE=settings.ARBOR_RUN_QUEUE)  # the worker's queue
    sessions = [SessionFactory(owner=user).pk for _ in range(RUNS)]
    sampler = PeakConnections()
    sampler.start()
    try:
        results = asyncio.run(burst(base, api_token, sessions, "[[tokens:5]] [[delay:0.2]] crowd"))
    finally:
        peak = sampler.stop()
        web.stop()
    errors = [r for r in results if r["error"] or r["status"] != "succeeded"]
    assert not errors, [{k: r[k] for k in ("error", "status", "post", "first")} for r in errors[:5]]
    assert sum(r["reconnects"] for r in results) == 0, "a stream was cut before done"
    assert Run.objects.filter(session_id__in=sessions, status=RunStatus.SUCCEEDED).count() == RUNS
    assert 0 < peak <= 60, f"{peak} PostgreSQL connections for {RUNS} runs at once"
