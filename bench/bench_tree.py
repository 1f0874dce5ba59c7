"""Issue 2 figures: path reads, rows/bytes per appended turn, fork time, first-token overhead;
issue 11: the path read on a PostgreSQL table of 1,000,000 runs (``ARBOR_BENCH_TREE_CHAINS`` chains
of 1,000 turns, default 1,000; fewer for a quick run), warm and cold, with EXPLAIN's buffer counts,
next to the recursive CTE it replaced; issue 26: the reads a worker's turn does at depth 1,000 on that
table (``engine.context.read_path``), after a compaction and without one, against their goal."""

from __future__ import annotations

import json
import os
import re
import time

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.models import AuditLog
from bench import bigtree
from bench.harness import Bench, ms, percentile, timed
from conversations import services
from conversations.context_spec import path_memory_ids, path_messages
from conversations.models import Message, Role, Run, RunStatus, Session, Step
from engine import execute
from engine.context import latest_compactions, pinned_ids, read_path
from memory.models import Compaction, CompactionStatus
from streams.models import RunEvent
from tests.support.factories import SessionFactory, UserFactory, build_chain

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
    from tests.support.processes import start_web, start_worker

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
# Characters of the user message and of the answer of each turn of the big table.
SCALE_TEXT = tuple(int(n) for n in os.environ.get("ARBOR_BENCH_TREE_TEXT", "200,800").split(","))
COLD_SAMPLES = 5

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


# A materialised-path read for reference: the ancestors' ids stored as an array (only on the leaves
# this bench reads: see _store_ancestor_arrays), then the same message lookups and columns.
ARRAY_PATH_SQL = (
    "SELECT m.id, m.run_id, p.depth - 1, m.position, m.role, m.content, m.name, m.tool_calls, m.tool_call_id,"
    " NULLIF(m.metadata, '{}'), m.token_count"
    " FROM unnest((SELECT path FROM bench_ancestors WHERE id = %s)) WITH ORDINALITY AS p(id, depth)"
    " JOIN conversations_message m ON m.run_id = p.id ORDER BY p.depth, m.position"
)


def _sql_of(read, leaf) -> str:
    """The one statement ``read(leaf)`` sends, parameters inlined (PostgreSQL's client-side binding)."""
    with CaptureQueriesContext(connection) as queries:
        read(leaf)
    assert len(queries) == 1, [q["sql"] for q in queries]
    return queries[0]["sql"]


def _for_leaf(sql: str, leaf0, leaf) -> str:
    """``sql``, a statement sent for ``leaf0`` with its id inlined, for ``leaf`` instead."""
    out = sql.replace(leaf0.hex, leaf.hex).replace(str(leaf0), str(leaf))
    assert leaf0 == leaf or out != sql, "the leaf's id is not in the statement"
    return out


def _explain(sql: str, params=()) -> tuple[str, str]:
    """``("hit/read", "ms")``: shared buffers hit and read, and the execution time, of one run of
    ``sql`` under EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) (no clock read per row and node)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    buffers = re.search(r"Buffers: shared( hit=(\d+))?( read=(\d+))?", plan)
    hit, read = (buffers.group(2) or "0", buffers.group(4) or "0") if buffers else ("?", "?")
    return f"{hit}/{read}", re.search(r"Execution Time: ([\d.]+) ms", plan).group(1)


def _fresh_backend() -> None:
    """Close the connection and its pool, and open a new one (a new PostgreSQL backend, whose
    catalog and plan caches start empty); the connect itself is not timed."""
    connection.close()
    if getattr(connection, "pool", None) is not None:
        connection.close_pool()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cold(read, leaves) -> list[float]:
    """Seconds of ``read(leaf)``, each the first query of a new backend, for leaves of chains nothing
    has read since the fill: their pages are not in PostgreSQL's shared buffers (they may be in the
    OS page cache; EXPLAIN's ``read=`` counts show how many were not)."""
    out = []
    for leaf in leaves:
        _fresh_backend()
        started = time.perf_counter()
        read(leaf)
        out.append(time.perf_counter() - started)
    return out


def _row(name, read, warm_leaf, cold_leaves, sql_of=None) -> list:
    """One line of the scale table: warm p50/p95 (the same leaf again and again), cold p50/p95
    (``cold_leaves`` but the last), EXPLAIN's buffers and time warm, and cold on the last one."""
    warm, cpu = _timed_with_cpu(lambda: read(warm_leaf), repeat=50)
    cold = _cold(read, cold_leaves[:-1])
    if sql_of is None:  # the statement read(warm_leaf) sends, for another leaf (without running it)
        sent = _sql_of(read, warm_leaf)
        sql_of = lambda leaf: (_for_leaf(sent, warm_leaf, leaf), ())  # noqa: E731
    warm_buffers, warm_ms = _explain(*sql_of(warm_leaf))
    cold_sql = sql_of(cold_leaves[-1])
    _fresh_backend()
    cold_buffers, cold_ms = _explain(*cold_sql)
    return [name, ms(percentile(warm, 50)), ms(percentile(warm, 95)), ms(percentile(cpu, 50)),
            ms(percentile(cold, 50)), ms(percentile(cold, 95)), warm_buffers, warm_ms, cold_buffers, cold_ms]


def _timed_with_cpu(fn, repeat: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Wall seconds and this process's CPU seconds of each of ``repeat`` calls (after ``warmup``):
    on a busy machine the CPU time shows what the client itself spends."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return wall, cpu


def _cte_read(leaf):
    with connection.cursor() as cursor:
        cursor.execute(CTE_PATH_SQL, [leaf])
        return cursor.fetchall()


def _array_read(leaf):
    with connection.cursor() as cursor:
        cursor.execute(ARRAY_PATH_SQL, [leaf])
        return cursor.fetchall()


def _raw_read(sql: str, leaf0):
    """Query + fetch only (no row building) of ``sql``, the statement sent for ``leaf0``, for any leaf."""
    def read(leaf):
        with connection.cursor() as cursor:
            cursor.execute(_for_leaf(sql, leaf0, leaf))
            return cursor.fetchall()
    return read


def _store_ancestor_arrays(chains: list[int], depth: int) -> None:
    """``bench_ancestors(id, path uuid[])`` for the leaves of ``chains`` only: what a materialised
    path would store on every run, computed from the fill's ids (so no run is read for it)."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_ancestors (id uuid PRIMARY KEY, path uuid[] NOT NULL)")
        cursor.execute(
            "INSERT INTO bench_ancestors SELECT md5('r' || c || '-' || %s)::uuid,"
            " ARRAY(SELECT md5('r' || c || '-' || t)::uuid FROM generate_series(0, %s) t ORDER BY t)"
            " FROM unnest(%s::int[]) c", [depth - 1, depth - 1, chains])
        cursor.execute("VACUUM ANALYZE bench_ancestors")


def bench_path_at_scale(bench: Bench) -> None:
    """The depth-1,000 path read on ``SCALE_CHAINS`` × 1,000 runs (PostgreSQL only), owned by a user
    of its own (all of whose rows are deleted at the end)."""
    if connection.vendor != "postgresql":
        bench.table("Path read at scale", ["skipped"], [["needs PostgreSQL (DATABASE_URL)"]])
        return
    chains, depth = SCALE_CHAINS, SCALE_DEPTH
    reads = 9  # rows of the tables with cold figures
    assert chains > reads * (COLD_SAMPLES + 1), "ARBOR_BENCH_TREE_CHAINS is too small for the cold samples"
    leaf = lambda chain: bigtree.run_id(chain, depth - 1)  # noqa: E731
    # Cold reads take chains nothing has read, spread out: neighbouring chains share heap pages.
    stride = (chains - 1) // (reads * (COLD_SAMPLES + 1))
    cold_chains = [[1 + stride * (i * reads + r) for i in range(COLD_SAMPLES + 1)] for r in range(reads)]
    cold = [[leaf(c) for c in these] for these in cold_chains]
    user = UserFactory()
    with bigtree.big_table(user, chains, depth, text=SCALE_TEXT) as seconds:
        sizes = _scale_sizes(chains * depth)
        branched = _branched_path(user, every=50)
        _store_ancestor_arrays([0, *cold_chains[3]], depth)
        try:
            path_sql = _sql_of(path_messages, leaf(0))
            rows = [
                _row("path_messages (segments), 1 segment", path_messages, leaf(0), cold[0]),
                _row("  its query + fetch only", _raw_read(path_sql, leaf(0)), leaf(0), cold[1],
                     sql_of=lambda lf: (_for_leaf(path_sql, leaf(0), lf), ())),
                _row("recursive CTE (the read before), query + fetch only", _cte_read, leaf(0), cold[2],
                     sql_of=lambda lf: (CTE_PATH_SQL, [lf])),
                _row("materialised path (uuid[] on the run), query + fetch only", _array_read, leaf(0), cold[3],
                     sql_of=lambda lf: (ARRAY_PATH_SQL, [lf])),
                _row("path_memory_ids (ancestor_of)", lambda lf: dict(path_memory_ids(lf)), leaf(0), cold[4]),
            ]
            warm, cpu = _timed_with_cpu(lambda: path_messages(branched), repeat=50)
            rows.append([f"path_messages, {_segments_on_path(branched)} segments (a branch every 50 turns)",
                         ms(percentile(warm, 50)), ms(percentile(warm, 95)), ms(percentile(cpu, 50)), "", "",
                         *_explain(_sql_of(path_messages, branched)), "", ""])
            worker = _worker_rows(warm=(0, chains - 1), cold=cold_chains[5:8])
        finally:
            with connection.cursor() as cursor:
                cursor.execute("DROP TABLE bench_ancestors")
            Compaction.objects.filter(run__session__owner=user).delete()
    fill = seconds["session"] + seconds["run"] + seconds["message"]
    bench.table(
        f"Path read at scale: depth {depth} of {chains * depth:,} runs ({chains:,} chains, {2 * chains * depth:,} "
        f"messages of {SCALE_TEXT[0]} + {SCALE_TEXT[1]} characters per turn); filled in {fill:.0f} s + VACUUM ANALYZE "
        f"{seconds['vacuum']:.0f} s, deleted in {seconds['delete']:.0f} s; load average {os.getloadavg()[0]:.1f}",
        ["read", "warm p50 ms", "warm p95 ms", "client CPU p50 ms", f"cold p50 ms (n={COLD_SAMPLES})",
         "cold p95 ms", "buffers warm hit/read", "server ms warm", "buffers cold hit/read", "server ms cold"],
        rows,
    )
    bench.table(
        f"A worker's path reads for a turn at depth {depth} of {chains * depth:,} runs (issue 26 goal: "
        f"{WORKER_GOAL}; each row's 1-minute load average beside it)",
        ["read", "statements", "messages read", "warm p50 ms", "warm p95 ms", "client CPU p50 ms",
         f"cold p50 ms (n={COLD_SAMPLES})", "cold p95 ms", "buffers warm hit/read", "server ms warm",
         "buffers cold hit/read", "server ms cold", "goal ms", "load"],
        worker,
    )
    bench.table("Storage of the run tree at scale (PostgreSQL, bytes per run)", ["what", "bytes per run"], sizes)


WORKER_GOAL = "≤ 5 ms warm p50, ≤ 15 ms cold p50"
# The compaction the worker's read starts from: on the run 21 turns above the leaf, keeping its 3
# turns before it (a summary every ~20 turns keeping 4 recent turns, as the default policy does on a
# window of ~8,000 tokens with these turns of ~250 tokens): 24 turns of messages are read.
COMPACTED_AT, KEPT_FROM = SCALE_DEPTH - 21, SCALE_DEPTH - 24


def _turn_run(chain: int) -> Run:
    """The leaf of ``chain`` as the worker holds its run after the claim (no query: the fill's ids)."""
    return Run(pk=bigtree.run_id(chain, SCALE_DEPTH - 1), depth=SCALE_DEPTH - 1,
               memory_id=Run._meta.get_field("memory_id").get_default())


def _compact(chains: list[int]) -> None:
    """A ready compaction (a summary of 800 characters) on each of ``chains`` at ``COMPACTED_AT``,
    starting at ``KEPT_FROM``: written without foreign-key checks, so no run's page is read for it."""
    memory_id = Run._meta.get_field("memory_id").get_default()
    rows = [Compaction(run_id=bigtree.run_id(c, COMPACTED_AT), memory_id=memory_id, status=CompactionStatus.READY,
                       from_depth=KEPT_FROM, summary=bigtree.text(800)) for c in chains]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        Compaction.objects.bulk_create(rows)


def _read_before(run: Run) -> list:
    """The worker's reads before issue 26: the whole path, its memory ids, the pins of its runs (by
    their ids) and the compactions on it."""
    path = path_messages(run)
    path_memory_ids(run)
    pinned_ids([m for m in path if m.run_id != run.pk])
    latest_compactions(run, run.memory_id)
    return path


def _worker_rows(*, warm: tuple[int, int], cold: list[list[int]]) -> list[list]:
    """Rows of the worker table: the reads before (on compacted chains), ``read_path`` on compacted
    chains (``warm[0]``, ``cold[1]``) and on chains without a compaction (``warm[1]``, ``cold[2]``).
    The segment walk is index-only: ``run_segment_depth`` carries ``id`` and ``memory_id``
    (migration 0012)."""
    _compact([warm[0], *cold[0], *cold[1]])
    compacted = f"read_path, compaction {SCALE_DEPTH - COMPACTED_AT} turns up (from depth {KEPT_FROM})"
    rows = [
        _worker_row("before: whole path + memory ids + pins by run id + compactions", _read_before, warm[0], cold[0]),
        _worker_row(compacted, lambda run: read_path(run, None)[0], warm[0], cold[1]),
        _worker_row("read_path, no compaction (the whole path)", lambda run: read_path(run, None)[0], warm[1], cold[2]),
    ]
    return rows


def _worker_row(name: str, read, warm_chain: int, cold_chains: list[int]) -> list:
    """One row of the worker table: ``read(run)`` (several statements) warm and cold, with EXPLAIN's
    buffers and server time summed over its statements (cold: the first read of a chain not read
    yet, on a new backend)."""
    run = _turn_run(warm_chain)
    warm, cpu = _timed_with_cpu(lambda: read(run), repeat=50)
    cold = _cold(read, [_turn_run(c) for c in cold_chains[:-1]])
    statements, messages, warm_buffers, warm_ms = _explained(read, run)
    _fresh_backend()
    _, _, cold_buffers, cold_ms = _explained(read, _turn_run(cold_chains[-1]))
    return [name, statements, messages, ms(percentile(warm, 50)), ms(percentile(warm, 95)), ms(percentile(cpu, 50)),
            ms(percentile(cold, 50)), ms(percentile(cold, 95)), warm_buffers, warm_ms, cold_buffers, cold_ms,
            WORKER_GOAL, f"{os.getloadavg()[0]:.1f}"]


def _explained(read, run: Run) -> tuple[int, int, str, str]:
    """``(statements, messages read, "hit/read", "ms")`` of ``read(run)``: each statement it sends is
    run under EXPLAIN (ANALYZE, BUFFERS) just before it runs (so a cold read's EXPLAIN sees the cold
    pages), buffers and server milliseconds summed."""
    hit = read_pages = count = 0
    total = 0.0

    def explain_first(execute, sql, params, many, context):
        nonlocal hit, read_pages, count, total
        raw = context["cursor"].cursor
        raw.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + sql, params)
        figures = _plan_figures("\n".join(row[0] for row in raw.fetchall()))
        hit, read_pages = hit + figures[0], read_pages + figures[1]
        total, count = total + figures[2], count + 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain_first):
        messages = len(read(run))
    return count, messages, f"{hit}/{read_pages}", f"{total:.2f}"


def _plan_figures(plan: str) -> tuple[int, int, float]:
    """Shared buffers hit and read (the plan's top node) and the execution time of an EXPLAIN."""
    buffers = re.search(r"Buffers: shared( hit=(\d+))?( read=(\d+))?", plan)
    hit, read = (int(buffers.group(2) or 0), int(buffers.group(4) or 0)) if buffers else (0, 0)
    return hit, read, float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))


def _branched_path(user, *, every: int) -> Run:
    """A 1,000-deep path on the big table that takes a second child every ``every`` turns (one
    segment per ``every`` runs), its texts as long as the fill's, written through the ORM
    (``RunQuerySet.bulk_create`` gives the segments)."""
    session = SessionFactory(owner=user)
    runs, side, messages = [], [], []
    for depth in range(SCALE_DEPTH):
        parent = runs[-1] if runs else None
        runs.append(Run(session=session, parent_run=parent, depth=depth, status=RunStatus.SUCCEEDED, model="m"))
        if depth % every == 0 and parent is not None:  # a first child off the path: the path's run starts a segment
            side.append(Run(session=session, parent_run=parent, depth=depth, status=RunStatus.SUCCEEDED, model="m"))
    for run in runs:
        messages.append(Message(run=run, position=0, role=Role.USER, content=bigtree.text(SCALE_TEXT[0])))
        messages.append(Message(run=run, position=1, role=Role.ASSISTANT, content=bigtree.text(SCALE_TEXT[1])))
    Run.objects.bulk_create(side + runs, batch_size=1000)
    Message.objects.bulk_create(messages, batch_size=1000)
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
        ["run_segment_depth index (segment, depth) INCLUDE (id, memory_id)", f"{index / runs:.0f}"],
        ["run table, row + every index", f"{run_total / runs:.0f} (heap {run_heap / runs:.0f})"],
        ["messages of a run (2), rows + indexes, no full-text index", f"{message_total / runs:.0f}"],
    ]


# ``ARBOR_BENCH_TREE_PARTS`` (default: all, in this order) picks the parts, e.g. ``scale`` for the
# path read on 1,000,000 runs alone.
PARTS = {
    "reads": bench_path_reads, "append": bench_append, "fork": bench_fork, "first_token": bench_first_token,
    "scale": lambda bench, user: bench_path_at_scale(bench),
}


def run(bench: Bench) -> None:
    user = UserFactory()
    chosen = os.environ.get("ARBOR_BENCH_TREE_PARTS", ",".join(PARTS)).split(",")
    unknown = set(chosen) - set(PARTS)
    if unknown:
        raise SystemExit(f"ARBOR_BENCH_TREE_PARTS: unknown {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}")
    for part in chosen:
        PARTS[part](bench, user)
