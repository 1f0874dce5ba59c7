"""``bench storage``: what PostgreSQL keeps per turn (issue 11), and where Arbor's own time per turn
goes (an in-process profile of the web and worker halves of one turn).

Storage: 500 turns of a 200-character input and an ~800-character answer, each through the real
pipeline in this process (``services.run_start`` as the web does, ``engine.execute.run_execute`` as
the worker does, the scripted model answering at once). Figures per turn, by table:

- *row bytes*: ``pg_column_size`` of the live rows the turns added (heap tuples, TOAST included);
- *dead bytes*: row versions left behind by UPDATEs (``pg_stat_user_tables.n_dead_tup`` times the
  table's mean row size) — what autovacuum must clean up;
- *disk*: growth of ``pg_total_relation_size`` (heap, TOAST and every index), for honesty.

Text is the characters of the input and answer stored (``Message.content``). Target: row bytes
≤ 3 × text. PostgreSQL only; on SQLite it prints nothing.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import time

from django.db import connection

from bench.harness import Bench, ms, percentile
from conversations import services
from conversations.models import Message, Run, Session, Step
from engine import execute
from memory.models import Compaction
from streams.models import RunEvent
from tests.support.factories import SessionFactory, UserFactory

TURNS = int(os.environ.get("ARBOR_BENCH_STORAGE_TURNS", "500"))
TABLES = [Session, Run, Message, Step, RunEvent, Compaction]
ANSWER = "[[tokens:182]] [[delay:0]]"  # "w0 w1 … w181": 799 characters


def _input(i: int) -> str:
    head = f"{ANSWER} turn {i}: "
    return head + "x" * (200 - len(head))


def _sizes() -> dict[str, tuple[int, int, int]]:
    """{table: (live row bytes, dead tuples, total relation bytes)} — after a stats flush."""
    out = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        for model in TABLES:
            table = model._meta.db_table
            cursor.execute(f"SELECT COALESCE(SUM(pg_column_size(t.*)), 0), COUNT(*) FROM {table} t")
            row_bytes, _count = cursor.fetchone()
            cursor.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", [table])
            dead = (cursor.fetchone() or [0])[0]
            cursor.execute("SELECT pg_total_relation_size(%s)", [table])
            out[table] = (int(row_bytes), int(dead), int(cursor.fetchone()[0]))
    return out


def _turn(session: Session, text: str) -> Run:
    run = services.run_start(session=session, input=text)
    execute.run_execute(run_id=str(run.pk))
    return run


def bench_bytes_per_turn(bench: Bench, user) -> None:
    session = SessionFactory(owner=user)
    before = _sizes()
    for i in range(TURNS):
        session.refresh_from_db()
        _turn(session, _input(i))
    time.sleep(0.6)  # statistics are flushed at most every 0.5 s by other backends
    after = _sizes()
    text = sum(len(m.content) for m in Message.objects.filter(run__session=session))
    rows, total_rows, total_dead, total_disk = [], 0, 0, 0
    for table, (row_bytes, dead, disk) in after.items():
        b_rows, b_dead, b_disk = before[table]
        live = row_bytes - b_rows
        mean = row_bytes / max(1, _count(table))
        dead_bytes = (dead - b_dead) * mean
        rows.append([table, f"{live / TURNS:.0f}", f"{dead_bytes / TURNS:.0f}", f"{(disk - b_disk) / TURNS:.0f}"])
        total_rows += live
        total_dead += dead_bytes
        total_disk += disk - b_disk
    rows.append(["all", f"{total_rows / TURNS:.0f}", f"{total_dead / TURNS:.0f}", f"{total_disk / TURNS:.0f}"])
    bench.table(
        f"Bytes per turn on PostgreSQL ({TURNS} turns of 200 + ~800 characters; text {text / TURNS:.0f} bytes/turn; "
        f"row bytes = {total_rows / text:.2f} × text, target ≤ 3 ×)",
        ["table", "row bytes / turn", "dead row bytes / turn", "disk growth / turn (with indexes)"], rows,
    )


def _count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}")
        return int(cursor.fetchone()[0])


def bench_turn_profile(bench: Bench, user) -> None:
    """Arbor's own time per turn in one process: web half (run_start) and worker half (run_execute),
    at depth 10 and 500, with the scripted model answering at once; then the top functions."""
    rows = []
    profile = cProfile.Profile()
    for depth in (10, 500):
        session = SessionFactory(owner=user)
        for i in range(depth):
            session.refresh_from_db()
            _turn(session, _input(i))
        web, worker = [], []
        for i in range(20):
            session.refresh_from_db()
            began = time.perf_counter()
            run = services.run_start(session=session, input=_input(i))
            middle = time.perf_counter()
            if depth == 500 and i >= 5:
                profile.enable()
            execute.run_execute(run_id=str(run.pk))
            profile.disable()
            web.append(middle - began)
            worker.append(time.perf_counter() - middle)
        rows.append([depth, ms(percentile(web, 50)), ms(percentile(worker, 50))])
    bench.table("Arbor's own time per turn, in process (model answers at once; p50 of 20 turns)",
                ["depth", "web: run_start ms", "worker: run_execute ms (incl. model HTTP)"], rows)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue(), flush=True)


def run(bench: Bench) -> None:
    if connection.vendor != "postgresql":
        print("bench storage: PostgreSQL only (set DATABASE_URL)")
        return
    user = UserFactory()
    bench_bytes_per_turn(bench, user)
    bench_turn_profile(bench, user)
