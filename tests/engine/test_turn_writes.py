"""What one turn writes (issue 11, "less written per turn"), and the delta batching of streams."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import context_spec as ctx
from conversations import services
from conversations.models import Message, RunStatus, Step, StepKind
from engine import execute
from engine.deltas import DeltaBatcher
from tests.support.factories import SessionFactory, build_chain
from tests.support.processes import wait_for


class _Recorder:
    """A RunStream stand-in that records what is published (and when)."""

    holds_no_connection = True

    def __init__(self):
        self.events: list[tuple[float, str, dict]] = []
        self.lock = threading.Lock()

    def publish(self, run_id, type, data=None):
        with self.lock:
            self.events.append((time.monotonic(), type, data or {}))
        return "1-0"


def test_a_burst_of_deltas_is_published_in_a_few_events_in_order():
    stream = _Recorder()
    batcher = DeltaBatcher("r", stream, interval=0.05)
    words = [f"w{i} " for i in range(500)]
    for word in words:
        batcher.add(word)
    batcher.close()
    texts = [data["text"] for _, kind, data in stream.events if kind == "delta"]
    assert texts[0] == "w0 "  # the first delta goes out at once (time to first token)
    assert "".join(texts) == "".join(words)
    assert len(texts) < 20, len(texts)


def test_many_runs_streaming_at_once_share_the_process_event_budget(settings):
    """40 runs streaming at once on a budget of 100 events a second: each run's deltas are batched
    0.4 s apart (its first still at once); once they are closed a run gets the short interval again."""
    settings.ARBOR_STREAM_EVENTS_PER_SECOND = 100
    stream = _Recorder()
    crowd = [DeltaBatcher(f"r{i}", stream, interval=0.02) for i in range(40)]
    assert all(0.4 <= b.interval <= 0.5 for b in crowd)  # 40 runs / 100 events a second
    first = crowd[0]
    first.add("Hello")
    first.add(" world")  # queued: the first event went out at once
    assert [data["text"] for _, _, data in stream.events] == ["Hello"]
    for batcher in crowd:
        batcher.close()
    assert [data["text"] for _, _, data in stream.events] == ["Hello", " world"]
    alone = DeltaBatcher("alone", stream, interval=0.02)
    assert alone.interval == 0.02
    alone.close()
    at_once = DeltaBatcher("x", stream, interval=0.0)
    assert at_once.interval == 0.0  # "every delta at once" stays so
    at_once.close()


def test_text_queued_before_a_silence_goes_out_within_about_one_interval():
    """The model sends two tokens and goes silent: the second is not held until the next token."""
    stream = _Recorder()
    batcher = DeltaBatcher("r", stream, interval=0.05)
    batcher.add("Hello")
    queued_at = time.monotonic()
    batcher.add(" world")
    wait_for(lambda: len(stream.events) == 2, timeout=2, message="the flusher")
    assert stream.events[1][2] == {"text": " world"}
    assert stream.events[1][0] - queued_at < 0.5
    batcher.close()
    assert len(stream.events) == 2


@pytest.mark.django_db(transaction=True)  # committed: the worker's watcher (its own connection) sees the run
def test_a_turn_writes_each_step_once_and_the_context_spec_once(user, django_capture_on_commit_callbacks,
                                                                unconsumed_run_queue):
    """The worker's writes for a plain turn: one model-call step, INSERTed once, finished (no
    UPDATE of a step, no second copy of the context spec), carrying the context build's
    accounting; the exact context is still rebuilt and verified from the one stored spec."""
    session = SessionFactory(owner=user)
    build_chain(session, 3)
    session.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False):  # no task: this test is the worker
        run = services.run_start(session=session, input="[[tokens:50]] [[delay:0]] one more")
    with CaptureQueriesContext(connection) as queries:
        execute.run_execute(run_id=str(run.pk))
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.error_type, run.error_message)
    sql = [q["sql"] for q in queries.captured_queries]
    step_writes = [s for s in sql if "conversations_step" in s and s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert [s.split()[0].upper() for s in step_writes] == ["INSERT"], step_writes
    steps = list(Step.objects.filter(run=run))
    assert [s.kind for s in steps] == [StepKind.LLM_CALL]
    llm_step = steps[0]
    assert llm_step.status == RunStatus.SUCCEEDED and llm_step.finished_at
    assert llm_step.request["message_count"] == 8
    build = llm_step.request["build"]  # what the context step held, without what the request already has
    assert build["history_messages"] == 6 and build["context_window"] > 0 and build["ms"] >= 0
    assert not {"context_tokens", "usable_window"} & set(build) and 0 not in build.values()
    assert set(llm_step.request["context"]) == {"system", "own_upto", "memory_id"}  # defaults left out
    checked = ctx.verify(run, llm_step.request)
    assert checked["verified"] is True and len(checked["messages"]) == 8
    assert Message.objects.filter(run=run).count() == 2
