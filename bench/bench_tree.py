"""Issue 2 figures: path reads, rows/bytes per appended turn, fork time, first-token overhead."""

from __future__ import annotations

import json
import time

import httpx
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditLog
from bench.harness import Bench, ms, percentile, timed
from conversations import services
from conversations.context import path_messages
from conversations.models import Message, Run, RunEvent, Session, Step
from engine import execute
from tests.factories import SessionFactory, UserFactory, build_chain

TABLES = {"run": Run, "message": Message, "step": Step, "runevent": RunEvent, "session": Session, "auditlog": AuditLog}


def _bytes_of_new_rows(model, since_ids) -> int | str:
    """Bytes of rows not in ``since_ids`` (PostgreSQL's pg_column_size of each whole row)."""
    if connection.vendor != "postgresql":
        return "n/a"
    table = model._meta.db_table
    pks = [pk for pk in model.objects.values_list("pk", flat=True) if pk not in since_ids]
    if not pks:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM {table} t WHERE t.id = ANY(%s)", [pks])
        return int(cursor.fetchone()[0])


def bench_path_reads(bench: Bench, user) -> None:
    rows = []
    for depth in (10, 100, 1000, 5000):
        session = SessionFactory(owner=user)
        leaf = build_chain(session, depth)[-1]
        with CaptureQueriesContext(connection) as queries:
            path_messages(leaf)
        times = timed(lambda: path_messages(leaf), repeat=30 if depth <= 1000 else 10)
        rows.append([depth, ms(percentile(times, 50)), ms(percentile(times, 95)), len(queries), 2 * depth])
    bench.table("Path read (root → leaf, all messages)", ["depth", "p50 ms", "p95 ms", "queries", "messages"], rows)


def bench_append(bench: Bench, user) -> None:
    """A whole turn: run_start in the web process plus run_execute in-process (the worker's writes)."""
    rows = []
    for depth in (10, 1000):
        session = SessionFactory(owner=user)
        build_chain(session, depth)
        session.refresh_from_db()
        before = {name: set(model.objects.values_list("pk", flat=True)) for name, model in TABLES.items()}
        with CaptureQueriesContext(connection) as queries:
            run = services.run_start(session=session, input="one more turn")
            execute.run_execute(run_id=str(run.pk))
        run.refresh_from_db()
        assert run.status == "succeeded", run.error
        inserted = {name: len(set(m.objects.values_list("pk", flat=True)) - before[name]) for name, m in TABLES.items()}
        written_bytes = sum(
            b for b in (_bytes_of_new_rows(m, before[n]) for n, m in TABLES.items()) if isinstance(b, int)
        ) if connection.vendor == "postgresql" else "n/a"
        updates = sum(q["sql"].lstrip().upper().startswith("UPDATE") for q in queries.captured_queries)
        rows.append([depth, sum(inserted.values()), updates,
                     ", ".join(f"{k} {v}" for k, v in inserted.items() if v), written_bytes])
    bench.table("Rows written per appended turn (web + worker)",
                ["depth", "rows inserted", "UPDATE statements", "inserted by table", "bytes inserted"], rows)


def bench_fork(bench: Bench, user) -> None:
    rows = []
    for depth in (10, 1000, 5000):
        session = SessionFactory(owner=user)
        leaf = build_chain(session, depth)[-1]
        times = timed(lambda: services.session_fork(run=leaf, owner=user), repeat=30)
        rows.append([depth, ms(percentile(times, 50)), ms(percentile(times, 95))])
    bench.table("Fork a run into a new session", ["depth", "p50 ms", "p95 ms"], rows)


def bench_first_token(bench: Bench, user) -> None:
    """Model's first token sent → first SSE delta received by a client, through a real worker and uvicorn."""
    from httpx_sse import connect_sse

    from accounts.models import ApiToken
    from tests.conftest import start_web, start_worker

    class _Server:  # what child_env/start_worker need of the model server
        base_url = bench.llm_base_url

    import tempfile
    from pathlib import Path

    log_dir = Path(tempfile.mkdtemp(prefix="arbor-bench-"))
    worker = start_worker(_Server, log_dir)
    web, base = start_web(_Server, log_dir)
    token = ApiToken.issue(user=user)[1]
    session = SessionFactory(owner=user)
    overheads = []
    try:
        for i in range(25):
            run = services.run_start(session=session, input=f"ttft {i} [[first_delay:0.3]] [[tokens:5]]")
            with httpx.Client(timeout=30) as client, connect_sse(
                client, "GET", f"{base}/api/runs/{run.pk}/events", headers={"Authorization": f"Bearer {token}"}
            ) as source:
                events = source.iter_sse()
                for sse in events:
                    if sse.event == "delta":
                        received = time.time()
                        break
                for sse in events:
                    if sse.event == "done":
                        break
            sent = next(
                r["first_token_sent"]
                for r in httpx.get(bench.llm_base_url.removesuffix("/v1") + "/_requests").json()["requests"]
                if f"ttft {i} " in json.dumps(r["body"]["messages"])
            )
            overheads.append(received - sent)
    finally:
        web.stop()
        worker.stop()
    bench.table(
        "First-token overhead (model sends first token → client receives first SSE delta)",
        ["runs", "p50 ms", "p95 ms", "max ms", "stream backend"],
        [[len(overheads), ms(percentile(overheads, 50)), ms(percentile(overheads, 95)), ms(max(overheads)),
          settings.ARBOR_STREAM_URL.split("://")[0]]],
    )


def run(bench: Bench) -> None:
    user = UserFactory()
    bench_path_reads(bench, user)
    bench_append(bench, user)
    bench_fork(bench, user)
    bench_first_token(bench, user)
