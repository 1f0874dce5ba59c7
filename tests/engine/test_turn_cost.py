"""What one turn costs the database: the same queries at depth 10 and at depth 500 (the path, its
memory ids, the settings and the budget are each read once per turn), and the rows and UPDATEs it
writes, counted by table."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import services
from conversations.models import Run, RunStatus
from engine import execute
from tests.support.factories import SessionFactory, build_chain

WRITE = re.compile(r'^\s*(INSERT INTO|UPDATE|DELETE FROM)\s+"?(\w+)"?', re.I)


def _turn(user, depth: int, capture) -> tuple[list[str], list[str]]:
    """One turn below a chain of ``depth`` runs: the SQL of its web half (``run_start``) and of its
    worker half (``run_execute``, through compaction's measuring)."""
    session = SessionFactory(owner=user)
    build_chain(session, depth)
    session.refresh_from_db()
    with CaptureQueriesContext(connection) as web, capture(execute=False):  # no task: this test is the worker
        run = services.run_start(session=session, input="[[tokens:20]] [[delay:0]] and then?")
    with CaptureQueriesContext(connection) as worker:
        execute.run_execute(run_id=str(run.pk))
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
    return [q["sql"] for q in web.captured_queries], [q["sql"] for q in worker.captured_queries]


def _writes(sql: list[str]) -> Counter:
    """``{(verb, table): count}`` of the statements that write."""
    found = (WRITE.match(s) for s in sql)
    return Counter((m.group(1).split()[0].upper(), m.group(2)) for m in found if m)


@pytest.fixture
def big_window(settings):
    """A window no chain here comes near, so no compaction is due at either depth."""
    settings.ARBOR_DEFAULT_CONTEXT_WINDOW = 1_000_000


@pytest.mark.django_db(transaction=True)
def test_queries_per_turn_are_the_same_at_depth_10_and_500(user, big_window, django_capture_on_commit_callbacks,
                                                           unconsumed_run_queue):
    _turn(user, 3, django_capture_on_commit_callbacks)  # warm-up: the default connection, the token counter
    web10, worker10 = _turn(user, 10, django_capture_on_commit_callbacks)
    web500, worker500 = _turn(user, 500, django_capture_on_commit_callbacks)
    assert len(web10) == len(web500), (web10, web500)
    assert len(worker10) == len(worker500), (worker10, worker500)
    # One path read per turn, whatever the depth (the recursive segment walk appears once more in
    # the memory ids' read, and in the pins' and compactions' lookups, never once per run).
    assert sum("WITH RECURSIVE" in s and "conversations_message" in s for s in worker500) == 1, worker500
    # Claim, run, default connection, the path's facts (memory ids, pins, compactions: one
    # statement), the messages the context can send, context window (the build reuses what the turn
    # read); one transaction for the answer, the run and the model call's step (which holds the
    # context build's accounting); the comparisons' receiver (3); compaction's measuring on the
    # turn's path (compactions, pins): 18 at most.
    assert len(worker500) <= 18, "\n".join(s[:160] for s in worker500)


@pytest.mark.django_db(transaction=True)
def test_rows_and_updates_per_turn(user, big_window, django_capture_on_commit_callbacks, unconsumed_run_queue):
    """The web half writes the run, its input (its tokens counted before the insert), one audit row
    and one UPDATE of the session; the worker claims the run (one UPDATE), inserts the answer and
    one step (the model call, with the context build's accounting), and writes the run's final
    state in one more UPDATE: no UPDATE of a message or step, no first-token UPDATE."""
    _turn(user, 3, django_capture_on_commit_callbacks)
    web, worker = _turn(user, 10, django_capture_on_commit_callbacks)
    assert _writes(web) == Counter({
        ("INSERT", "conversations_run"): 1, ("INSERT", "conversations_message"): 1,
        ("INSERT", "audit_auditlog"): 1, ("UPDATE", "conversations_session"): 1,
    }), _writes(web)
    assert _writes(worker) == Counter({
        ("UPDATE", "conversations_run"): 2, ("INSERT", "conversations_message"): 1,
        ("INSERT", "conversations_step"): 1,
    }), _writes(worker)
