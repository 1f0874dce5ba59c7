"""Issue 2 figures: path reads, rows/bytes per appended turn, fork time, first-token overhead;
issue 11: the path read on a PostgreSQL table of 1,000,000 runs (``ARBOR_BENCH_TREE_CHAINS`` chains
of 1,000 turns, default 1,000; fewer for a quick run), warm and cold, with EXPLAIN's buffer counts,
next to the recursive CTE it replaced."""

from __future__ import annotations

import json
import os
import re
import time

import httpx
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditLog
from bench import bigtree
from bench.harness import Bench, ms, percentile, timed
from conversations import services
from conversations.context import path_memory_ids, path_messages
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
    """``path_messages`` on a small table (the chains of this bench only), warm."""
    rows = []
    for depth in (10, 100, 1000, 5000):
        session = SessionFactory(owner=user)
        leaf = build_chain(session, depth)[-1]
        with CaptureQueriesContext(connection) as queries:
            path_messages(leaf)
        times = timed(lambda: path_messages(leaf), repeat=30 if depth <= 1000 else 10)
        explained = _explain(queries[0]["sql"]) if connection.vendor == "postgresql" else ("n/a", "n/a")
        rows.append([depth, ms(percentile(times, 50)), ms(percentile(times, 95)), len(queries), 2 * depth,
                     *explained])
    bench.table("Path read (root → leaf, all messages), small table, warm",
                ["depth", "p50 ms", "p95 ms", "queries", "messages", "buffers hit/read", "server ms"], rows)


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


SCALE_CHAINS = int(os.environ.get("ARBOR_BENCH_TREE_CHAINS", "1000"))
SCALE_DEPTH = 1000
COLD_SAMPLES = 15

# The path read before segments (conversations/models.py until issue 11): a recursive CTE walking
# parent_run_id up one primary key lookup per level, then the messages of every run on it.
CTE_PATH_SQL = (
    "WITH RECURSIVE path(id, depth) AS ("
    " SELECT id, depth FROM conversations_run WHERE id = %s"
    " UNION ALL"
    " SELECT (SELECT r.parent_run_id FROM conversations_run r WHERE r.id = p.id), p.depth - 1 FROM path p"
    " WHERE p.depth > 0)"
    " SELECT m.id, m.run_id, m.position, m.role, m.content, m.name, m.tool_calls, m.tool_call_id, m.metadata,"
    " m.token_count, p.depth FROM conversations_message m JOIN path p ON m.run_id = p.id ORDER BY p.depth, m.position"
)


def _sql_of(read, leaf) -> str:
    """The one statement ``read(leaf)`` sends, parameters inlined (PostgreSQL's client-side binding)."""
    with CaptureQueriesContext(connection) as queries:
        read(leaf)
    assert len(queries) == 1, [q["sql"] for q in queries]
    return queries[0]["sql"]


def _explain(sql: str, params=()) -> tuple[str, str]:
    """``("hit/read", "ms")``: shared buffers hit and read, and the execution time, of one run of
    ``sql`` under EXPLAIN (ANALYZE, BUFFERS)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    buffers = re.search(r"Buffers: shared( hit=(\d+))?( read=(\d+))?", plan)
    hit, read = (buffers.group(2) or "0", buffers.group(4) or "0") if buffers else ("?", "?")
    return f"{hit}/{read}", re.search(r"Execution Time: ([\d.]+) ms", plan).group(1)


def _cold(read, leaves) -> list[float]:
    """Seconds of ``read(leaf)`` for leaves of chains nothing has read since the fill: their pages are
    not in PostgreSQL's shared buffers (they may be in the OS page cache). The connection is warm."""
    out = []
    for leaf in leaves:
        started = time.perf_counter()
        read(leaf)
        out.append(time.perf_counter() - started)
    return out


def _row(name, read, warm_leaf, cold_leaves, explain_cold_leaf, sql_of=None) -> list:
    """One line of the scale table: warm p50/p95 (the same leaf again and again), cold p50/p95,
    and EXPLAIN's buffers and time, warm and on one more unread chain."""
    warm = timed(lambda: read(warm_leaf), repeat=50, warmup=3)
    cold = _cold(read, cold_leaves)
    sql_of = sql_of or (lambda leaf: (_sql_of(read, leaf), ()))
    warm_buffers, warm_ms = _explain(*sql_of(warm_leaf))
    cold_buffers, cold_ms = _explain(*sql_of(explain_cold_leaf))
    return [name, ms(percentile(warm, 50)), ms(percentile(warm, 95)), ms(percentile(cold, 50)),
            ms(percentile(cold, 95)), warm_buffers, warm_ms, cold_buffers, cold_ms]


def _cte_read(leaf):
    with connection.cursor() as cursor:
        cursor.execute(CTE_PATH_SQL, [leaf])
        return cursor.fetchall()


def _raw_read(sql: str, leaf0):
    """Query + fetch only (no row building) of ``sql``, the statement sent for ``leaf0``, for any leaf."""
    def read(leaf):
        with connection.cursor() as cursor:
            cursor.execute(sql.replace(str(leaf0), str(leaf)))
            return cursor.fetchall()
    return read


def bench_path_at_scale(bench: Bench) -> None:
    """The depth-1,000 path read on ``SCALE_CHAINS`` × 1,000 runs (PostgreSQL only), owned by a user
    of its own (all of whose rows are deleted at the end)."""
    if connection.vendor != "postgresql":
        bench.table("Path read at scale", ["skipped"], [["needs PostgreSQL (DATABASE_URL)"]])
        return
    chains, depth = SCALE_CHAINS, SCALE_DEPTH
    assert chains >= 1 + 4 * (COLD_SAMPLES + 1), "ARBOR_BENCH_TREE_CHAINS is too small for the cold samples"
    leaf = lambda chain: bigtree.run_id(chain, depth - 1)  # noqa: E731
    cold = iter(range(1, chains))  # every cold read takes a chain nothing has read yet
    take = lambda n: [leaf(next(cold)) for _ in range(n)]  # noqa: E731
    user = UserFactory()
    with bigtree.big_table(user, chains, depth) as seconds:
        sizes = _scale_sizes(chains * depth)
        branched = _branched_path(user, every=50)
        path_sql = _sql_of(path_messages, leaf(0))
        rows = [
            _row("path_messages (segments), 1 segment", path_messages, leaf(0), take(COLD_SAMPLES), take(1)[0]),
            _row("  its query + fetch only", _raw_read(path_sql, leaf(0)), leaf(0), take(COLD_SAMPLES), take(1)[0],
                 sql_of=lambda lf: (path_sql.replace(str(leaf(0)), str(lf)), ())),
            _row("recursive CTE before, query + fetch only", _cte_read, leaf(0), take(COLD_SAMPLES), take(1)[0],
                 sql_of=lambda lf: (CTE_PATH_SQL, [lf])),
            _row("path_memory_ids (ancestor_of)", lambda lf: dict(path_memory_ids(lf)), leaf(0),
                 take(COLD_SAMPLES), take(1)[0]),
        ]
        warm = timed(lambda: path_messages(branched), repeat=50, warmup=3)
        rows.append([f"path_messages, {_segments_on_path(branched)} segments (a branch every 50 turns)",
                     ms(percentile(warm, 50)), ms(percentile(warm, 95)), "", "",
                     *_explain(_sql_of(path_messages, branched)), "", ""])
    fill = seconds["session"] + seconds["run"] + seconds["message"]
    bench.table(
        f"Path read at scale: depth {depth} of {chains * depth:,} runs ({chains:,} chains, {2 * chains * depth:,} "
        f"messages of 200 + 800 characters per turn); filled in {fill:.0f} s + VACUUM ANALYZE "
        f"{seconds['vacuum']:.0f} s, deleted in {seconds['delete']:.0f} s",
        ["read", "warm p50 ms", "warm p95 ms", f"cold p50 ms (n={COLD_SAMPLES})", "cold p95 ms",
         "buffers warm hit/read", "server ms warm", "buffers cold hit/read", "server ms cold"],
        rows,
    )
    bench.table("Storage of the run tree at scale (PostgreSQL, bytes per run)", ["what", "bytes per run"], sizes)


def _branched_path(user, *, every: int) -> Run:
    """A 1,000-deep path on the big table that takes a second child every ``every`` turns (one
    segment per ``every`` runs), written through the ORM (``RunQuerySet.bulk_create``)."""
    session = SessionFactory(owner=user)
    runs = build_chain(session, every)
    while runs[-1].depth + 1 < SCALE_DEPTH:
        build_chain(session, 1, parent=runs[-1])
        runs = build_chain(session, min(every, SCALE_DEPTH - runs[-1].depth - 1), parent=runs[-1])
    on_path = Message.objects.filter(run__session=session)  # texts as long as the big table's
    on_path.filter(position=0).update(content=(bigtree.TEXT * 3)[:200])
    on_path.filter(position=1).update(content=(bigtree.TEXT * 9)[:800])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE conversations_run")
        cursor.execute("VACUUM ANALYZE conversations_message")
    return runs[-1]


def _segments_on_path(leaf: Run) -> int:
    return Run.objects.ancestor_of(leaf, inclusive=True).values("segment").distinct().count()


def _scale_sizes(runs: int) -> list[list]:
    """Bytes per run of the segment column and index, and of the run and message tables."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_relation_size('run_segment_depth'), pg_total_relation_size('conversations_run'),"
            " pg_relation_size('conversations_run'), pg_total_relation_size('conversations_message'),"
            " (SELECT avg(pg_column_size(segment)) FROM conversations_run TABLESAMPLE SYSTEM (1))"
        )
        index, run_total, run_heap, message_total, column = cursor.fetchone()
    return [
        ["segment column (in the run row)", f"{float(column):.0f}"],
        ["run_segment_depth index (segment, depth) INCLUDE (id)", f"{index / runs:.0f}"],
        ["run table, row + every index", f"{run_total / runs:.0f} (heap {run_heap / runs:.0f})"],
        ["messages of a run (2), rows + indexes, no full-text index", f"{message_total / runs:.0f}"],
    ]


def run(bench: Bench) -> None:
    user = UserFactory()
    bench_path_reads(bench, user)
    bench_append(bench, user)
    bench_fork(bench, user)
    bench_first_token(bench, user)
    bench_path_at_scale(bench)
