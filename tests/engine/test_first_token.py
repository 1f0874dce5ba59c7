"""The first-token deadline (``ARBOR_FIRST_TOKEN_TIMEOUT``), separate from the read timeout between
tokens, on a real worker: a model that sends its headers and then nothing is given up after the
first-token deadline (retried once), not after the read timeout; a slow first token inside the
deadline is waited for; slow tokens after the first are bounded by the read timeout only."""

from __future__ import annotations

import time

import pytest

from conversations import services
from conversations.models import Message, RunStatus
from tests.engine.test_faults import finished_run
from tests.support.factories import SessionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_a_model_silent_before_its_first_token_is_cut_at_the_first_token_deadline(worker_factory, user):
    worker_factory(ARBOR_MODEL_READ_TIMEOUT="60", ARBOR_FIRST_TOKEN_TIMEOUT="2", ARBOR_RUN_DEADLINE_SECONDS="120")
    started = time.monotonic()
    run = services.run_start(session=SessionFactory(owner=user), input="[[hang]]")
    run = finished_run(run.pk, timeout=40)
    elapsed = time.monotonic() - started
    assert run.status == RunStatus.FAILED and run.error_type == "timeout", (run.error_type, run.error_message)
    assert "sent no first token within 2 s (ARBOR_FIRST_TOKEN_TIMEOUT)" in run.error_message
    assert run.attempts == 2  # retried once, as any hung model
    assert elapsed < 30  # two attempts of 2 s plus the retry's back-off; the read timeout (60 s) never ran out


def test_first_token_within_the_deadline_and_slow_tokens_after_it(worker_factory, user):
    worker_factory(ARBOR_MODEL_READ_TIMEOUT="10", ARBOR_FIRST_TOKEN_TIMEOUT="3")
    session = SessionFactory(owner=user)
    slow_start = services.run_start(session=session, input="[[first_delay:1.5]] [[tokens:3]]")
    # 5 tokens 2 s apart: 8 s after the first token, longer than the first-token deadline.
    slow_tokens = services.run_start(session=SessionFactory(owner=user), input="[[tokens:5]] [[delay:2]]")
    for run_id in (slow_start.pk, slow_tokens.pk):
        run = finished_run(run_id, timeout=40)
        assert run.status == RunStatus.SUCCEEDED, (run.error_type, run.error_message)
    assert Message.objects.get(run_id=slow_tokens.pk, position=1).content == "w0 w1 w2 w3 w4"
