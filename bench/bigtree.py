"""A large conversation table filled in SQL, for the path read at scale (``bench tree``).

:func:`big_table` writes ``chains`` sessions of ``depth`` turns each (a run with a user message
and an answer, 200 and 800 characters by default) with ``INSERT ... SELECT generate_series`` on PostgreSQL
(no model instances): 1,000 × 1,000 runs and 2,000,000 messages in about a minute and a half here.
Runs are written turn by turn across all chains (``ORDER BY turn, chain``), as many sessions
appending at once would write them, so a chain's runs do not sit next to each other on disk. Ids
are ``md5(...)::uuid`` of the chain and turn (random order in the primary key, like ``uuid4``), so
a run's parent id is computed, not looked up. Columns the fill does not name take their field's
default, so fields added to the models later need no change here. Each chain is one segment (a
first child continues its parent's segment), as ``Run.save`` would have made it.

The full-text index of messages is dropped for the fill (maintaining it row by row would take
minutes; path reads never use it) and built again once the rows are gone: the bench database is
shared by the sections that run after ``tree``.
"""

from __future__ import annotations

import hashlib
import importlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.apps import apps
from django.db import connection, transaction

from conversations.models import Message, Run, Session

TEXT = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
FTS = importlib.import_module("conversations.migrations.0002_message_content_fts")


def text(chars: int) -> str:
    """``chars`` characters of filler text."""
    return (TEXT * (1 + chars // len(TEXT)))[:chars]


def run_id(chain: int, turn: int) -> uuid.UUID:
    """The id the fill gives turn ``turn`` of chain ``chain`` (``md5('r<chain>-<turn>')``)."""
    return uuid.UUID(hashlib.md5(f"r{chain}-{turn}".encode()).hexdigest())


def _insert_select(cursor, model, named: dict[str, tuple[str, list]], tail: str) -> None:
    """``INSERT INTO <model> (...) SELECT ... <tail>``: ``named`` columns get their ``(expression,
    parameters)``, every other concrete field its default as a parameter (the auto id: none)."""
    columns, exprs, params = [], [], []
    for f in model._meta.concrete_fields:
        if f.column in named:
            expr, expr_params = named[f.column]
        elif f.primary_key and f.get_internal_type() in ("AutoField", "BigAutoField"):
            continue
        else:
            expr, expr_params = "%s", [f.get_db_prep_save(f.get_default(), connection)]
        columns.append(f.column)
        exprs.append(expr)
        params.extend(expr_params)
    cursor.execute(f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(exprs)} {tail}",
                   params)


def _fill(owner, chains: int, depth: int, *, user_chars: int, answer_chars: int) -> dict:
    """Write the rows (foreign keys unchecked during the fill: ``session_replication_role =
    replica``; the rows are consistent by construction). Returns seconds per step."""
    run_sql, session_sql = "md5('r' || c || '-' || t)::uuid", "md5('s' || c)::uuid"
    text = TEXT * (2 + max(user_chars, answer_chars) // len(TEXT))
    chain_rows = f"generate_series(0, {depth - 1}) t, generate_series(0, {chains - 1}) c"
    steps = [
        (Session, {"id": (session_sql, []), "owner_id": ("%s", [owner.pk]), "title": ("'chain ' || c", []),
                   "active_run_id": (f"md5('r' || c || '-' || {depth - 1})::uuid", [])},
         f"FROM generate_series(0, {chains - 1}) c"),
        (Run, {"id": (run_sql, []), "session_id": (session_sql, []), "depth": ("t", []),
               "parent_run_id": ("CASE WHEN t = 0 THEN NULL ELSE md5('r' || c || '-' || (t - 1))::uuid END", []),
               "segment": ("md5('r' || c || '-0')::uuid", []),
               "status": ("'succeeded'", []), "model": ("'bench-model'", [])},
         f"FROM {chain_rows} ORDER BY t, c"),
        (Message, {"run_id": (run_sql, []), "position": ("p", []),
                   "role": ("CASE WHEN p = 0 THEN 'user' ELSE 'assistant' END", []),
                   "content": ("substr('turn ' || t || ' of ' || c || ': ' || substr(%s, 1 + (t %% 7)), 1, "
                               "CASE WHEN p = 0 THEN %s ELSE %s END)", [text, user_chars, answer_chars])},
         f"FROM {chain_rows}, generate_series(0, 1) p ORDER BY t, c, p"),
    ]
    seconds = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        for model, named, tail in steps:
            started = time.perf_counter()
            _insert_select(cursor, model, named, tail)
            seconds[model._meta.model_name] = time.perf_counter() - started
    started = time.perf_counter()
    _vacuum()
    seconds["vacuum"] = time.perf_counter() - started
    return seconds


def _vacuum() -> None:
    """VACUUM ANALYZE the three tables (statistics, and the visibility map index-only scans need)."""
    with connection.cursor() as cursor:
        for model in (Session, Run, Message):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")


def _delete(owner) -> float:
    """Delete ``owner``'s sessions, runs and messages (foreign keys unchecked, like the fill: nothing
    else refers to them); returns seconds."""
    started = time.perf_counter()
    sessions = f"SELECT id FROM {Session._meta.db_table} WHERE owner_id = %s"
    runs = f"SELECT id FROM {Run._meta.db_table} WHERE session_id IN ({sessions})"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(f"DELETE FROM {Message._meta.db_table} WHERE run_id IN ({runs})", [owner.pk])
        cursor.execute(f"DELETE FROM {Run._meta.db_table} WHERE session_id IN ({sessions})", [owner.pk])
        cursor.execute(f"DELETE FROM {Session._meta.db_table} WHERE owner_id = %s", [owner.pk])
    _vacuum()
    return time.perf_counter() - started


@contextmanager
def big_table(owner, chains: int, depth: int, *, text: tuple[int, int] = (200, 800)) -> Iterator[dict]:
    """``chains`` × ``depth`` runs owned by ``owner`` for the duration of the block (PostgreSQL
    only), each turn ``text`` = (user, answer) characters long; yields the seconds each step of the
    fill took (``"delete"`` is added on the way out)."""
    assert connection.vendor == "postgresql", "the big table is filled with PostgreSQL's generate_series"
    with connection.schema_editor() as editor:
        FTS.drop(apps, editor)
    seconds = _fill(owner, chains, depth, user_chars=text[0], answer_chars=text[1])
    try:
        yield seconds
    finally:
        seconds["delete"] = _delete(owner)
        with connection.schema_editor() as editor:
            FTS.create(apps, editor)
