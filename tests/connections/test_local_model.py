"""End to end on the real local model: SmolLM2-135M-Instruct served by llama-cpp-python, a real
Celery worker, real streaming. Checks what Arbor does, not what the small model says."""

from __future__ import annotations

import pytest

from connections.local_model import smoke_prompt
from conversations import services
from conversations.models import Message, Run, RunStatus
from streams.backends import get_stream
from tests.support.factories import SessionFactory
from tests.support.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.local_model, pytest.mark.worker]


def test_two_turns_and_a_branch_on_the_local_model(local_model, worker_factory, settings, user):
    settings.OPENAI_BASE_URL = local_model
    worker_factory(OPENAI_BASE_URL=local_model, ARBOR_MODEL="smollm2-135m-instruct")
    session = SessionFactory(owner=user)
    params = {"max_tokens": 24, "temperature": 0}

    first = services.run_start(session=session, input="What is the capital of France?", model="smollm2-135m-instruct",
                               params=params)
    first = wait_for(lambda: (r := Run.objects.get(pk=first.pk)).is_finished and r, timeout=120)
    assert first.status == RunStatus.SUCCEEDED, first.error
    answer = Message.objects.get(run=first, position=1).content
    assert answer.strip()
    # llama.cpp's server sends no usage in a stream: Arbor counts with the model's own tokenizer.
    assert first.usage_counted and first.prompt_tokens > 10 and 0 < first.completion_tokens <= 24 + 1
    assert first.started_at <= first.first_token_at <= first.finished_at
    deltas = "".join(e.data["text"] for e in get_stream().events(first.pk) if e.type == "delta")
    assert deltas == answer

    second = services.run_start(session=session, input="And of Italy?", params=params, model="smollm2-135m-instruct")
    second = wait_for(lambda: (r := Run.objects.get(pk=second.pk)).is_finished and r, timeout=120)
    assert second.status == RunStatus.SUCCEEDED and second.parent_run_id == first.pk
    branch = services.run_start(session=session, input="And of Spain?", parent=first, params=params,
                                model="smollm2-135m-instruct")
    branch = wait_for(lambda: (r := Run.objects.get(pk=branch.pk)).is_finished and r, timeout=120)
    assert branch.status == RunStatus.SUCCEEDED and branch.parent_run_id == first.pk
    assert set(Run.objects.children_of(first)) == {second, branch}


def test_a_turn_with_a_prompt_of_several_hundred_tokens(local_model, worker_factory, settings, user):
    """The first real prompt is where a wheel built with refused CPU instructions crashed."""
    settings.OPENAI_BASE_URL = local_model
    worker_factory(OPENAI_BASE_URL=local_model, ARBOR_MODEL="smollm2-135m-instruct")
    run = services.run_start(session=SessionFactory(owner=user), input=smoke_prompt(), model="smollm2-135m-instruct",
                             params={"max_tokens": 24, "temperature": 0})
    run = wait_for(lambda: (r := Run.objects.get(pk=run.pk)).is_finished and r, timeout=180)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.prompt_tokens >= 300, run.prompt_tokens
    assert Message.objects.get(run=run, position=1).content.strip()
