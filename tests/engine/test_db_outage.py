"""The engine through a database outage: a run whose model has answered keeps its answer in memory
and writes its final state once PostgreSQL answers again (one answer, succeeded); the reaper judges
no heartbeat stale while the database has been up for less than the stale period."""

from __future__ import annotations

from datetime import timedelta

import django.db
import pytest
from django.utils import timezone

from conversations import services
from conversations.models import Message, Run, RunStatus
from engine import execute, finalize, recovery
from tests.support.factories import SessionFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_final_state_waits_for_the_database(user, monkeypatch, django_capture_on_commit_callbacks,
                                                 unconsumed_run_queue):
    session = SessionFactory(owner=user)
    with django_capture_on_commit_callbacks(execute=False):  # no task: this test is the worker
        run = services.run_start(session=session, input="[[tokens:12]] [[delay:0]] outage")
    real_write, tries = finalize._write_answer, []

    def down_twice(*args, **kwargs):
        tries.append(1)
        if len(tries) <= 2:
            raise django.db.OperationalError("the database system is shutting down")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(finalize, "_write_answer", down_twice)
    execute.run_execute(run_id=str(run.pk))
    run.refresh_from_db()
    assert len(tries) == 3
    assert run.status == RunStatus.SUCCEEDED and run.error_message == ""
    answers = Message.objects.filter(run=run, role="assistant")
    assert answers.count() == 1 and answers.get().content and not answers.get().metadata
    assert run.steps.filter(kind="llm_call", status=RunStatus.SUCCEEDED).count() == 1


def _stale_running_run(user) -> Run:
    session = SessionFactory(owner=user)
    return Run.objects.create(session=session, depth=0, model="fake-model", status=RunStatus.RUNNING, attempts=1,
                              heartbeat_at=timezone.now() - timedelta(days=400 * 100))


def test_no_heartbeat_is_stale_while_the_database_is_younger_than_the_stale_period(user, settings):
    run = _stale_running_run(user)
    settings.ARBOR_STALE_RUN_SECONDS = 3600 * 24 * 365 * 100  # the database started less than this ago
    assert recovery.reap_stale_runs()["requeued"] == 0
    settings.ARBOR_STALE_RUN_SECONDS = 30
    assert recovery.reap_stale_runs()["requeued"] == 1
    run.refresh_from_db()
    assert run.requeues == 1
