"""Cancelling a run whose model is silent, on a real worker: the model sends its headers and then
nothing (``[[hang]]``), with the read timeout and the first-token deadline far away, so only the
cancellation can end the read. The watcher must shut the socket down (closing the HTTP response
alone does not wake a read blocked on a silent socket): the run is finished within a second of
the cancel, with ``done`` published, not after the 60 s read timeout."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from conversations import services
from conversations.models import Run, RunStatus
from streams.backends import get_stream
from tests.support.factories import SessionFactory
from tests.support.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_cancel_of_a_silent_model_takes_effect_within_a_second(worker_factory, user, llm_server):
    worker_factory(ARBOR_MODEL_READ_TIMEOUT="60", ARBOR_FIRST_TOKEN_TIMEOUT="0", ARBOR_RUN_DEADLINE_SECONDS="120")
    run = services.run_start(session=SessionFactory(owner=user), input="[[hang]] silent")
    # The worker is blocked reading the model's stream: the request reached the model, and the
    # model has been silent for a while since.
    wait_for(lambda: any("silent" in str(r["body"].get("messages")) for r in llm_server.requests),
             timeout=30, message="the model request")
    wait_for(lambda: Run.objects.get(pk=run.pk).status == RunStatus.RUNNING, timeout=10, message="running")
    time.sleep(1.5)
    cancelled_at = timezone.now()
    services.run_cancel(run=Run.objects.get(pk=run.pk))
    finished = wait_for(lambda: Run.objects.filter(pk=run.pk, finished_at__isnull=False).first(), timeout=30,
                        interval=0.02, message="the cancelled run to finish")
    assert finished.status == RunStatus.CANCELLED
    took = (finished.finished_at - cancelled_at).total_seconds()
    assert took <= 1.0, f"the worker took {took:.2f} s to stop reading a silent model after the cancel"
    done = wait_for(lambda: [e for e in get_stream().events(run.pk) if e.type == "done"], timeout=5,
                    message="done published (right after the commit)")
    assert done[-1].data["status"] == "cancelled", done
