"""A Redis restart mid-stream (issue 12): runs keep generating, their streams catch up, every run
succeeds once with its whole answer, and every SSE client gets ``done`` on the connection it opened.

The run streams live on a Redis of the test's own (``redis-server`` on a free port, killed and
started again on the same port, so everything in it is lost); the broker stays on the suite's Redis.
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest
import redis

from conversations import services
from conversations.models import Message, Run, RunStatus
from tests.chaos.stack import OwnRedis
from tests.streams.test_silence import read_raw_stream
from tests.support.factories import SessionFactory
from tests.support.processes import start_web

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

REDIS_SERVER = shutil.which("redis-server")


@pytest.fixture
def own_redis():
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed (the machine and CI have it)")
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


def test_runs_and_streams_survive_a_redis_restart(own_redis, llm_server, proc_log_dir, worker_factory, user,
                                                 api_token):
    env = {"ARBOR_STREAM_URL": own_redis.url, "REDIS_URL": own_redis.url}
    worker_factory(**env)
    web, base = start_web(llm_server, proc_log_dir, **env)
    session = SessionFactory(owner=user)
    runs = [services.run_start(session=session, input=f"redis blip {i} [[tokens:60]] [[delay:0.1]]", parent=None)
            for i in range(4)]
    results: dict = {}

    def read(run):
        results[run.pk] = read_raw_stream(f"{base}/api/runs/{run.pk}/events", api_token)

    readers = [threading.Thread(target=read, args=(run,)) for run in runs]
    try:
        for reader in readers:
            reader.start()
        time.sleep(2.0)  # the runs are streaming
        own_redis.stop()
        time.sleep(3.0)  # Redis is down: the worker buffers deltas, readers keep their connections
        own_redis.start()
        for reader in readers:
            reader.join(60)
    finally:
        web.stop()
    for run in runs:
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED, (run.error_type, run.error_message)
        answer = Message.objects.get(run=run, position=1).content
        assert answer.split() == [f"w{i}" for i in range(60)], "the whole answer, written once"
        events, _, _ = results[run.pk]
        assert events and events[-1]["event"] == "done" and events[-1]["data"]["status"] == "succeeded", events[-3:]
    assert Run.objects.filter(session=session).count() == 4, "no run duplicated"


@pytest.mark.parametrize(
    ("error", "status"),
    [(redis.exceptions.ConnectionError("Error 111 connecting to redis"), 503), (RuntimeError("a bug"), 500)],
)
def test_api_failures_answer_json(api, user, monkeypatch, error, status):
    """Every /api/ error is JSON with ``detail``: 503 (with Retry-After) while a backing service is
    unreachable, 500 for anything else; never Django's HTML error page."""
    session = SessionFactory(owner=user)

    def failing(**kwargs):
        raise error

    monkeypatch.setattr(services, "run_start", failing)
    response = api.post(f"/api/sessions/{session.pk}/runs", data={"input": "hi"}, content_type="application/json")
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]
    if status == 503:
        assert response["Retry-After"] == "5"


def finished_run(run_id, timeout: float) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.get(pk=run_id)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {Run.objects.get(pk=run_id).status} after {timeout} s")


def test_a_hung_model_is_retried_once_then_the_run_fails_with_the_reason(worker_factory, user):
    """The model sends headers, then nothing: the read times out, the run is tried once more (not
    three times), then fails with a readable reason — in seconds, not 4 × the read timeout."""
    worker_factory(ARBOR_MODEL_READ_TIMEOUT="2", ARBOR_RUN_DEADLINE_SECONDS="60")
    session = SessionFactory(owner=user)
    started = time.monotonic()
    run = services.run_start(session=session, input="[[hang]]")
    run = finished_run(run.pk, timeout=30)
    assert run.status == RunStatus.FAILED and run.error_type == "timeout", (run.error_type, run.error_message)
    assert run.attempts == 2
    assert "did not answer in time" in run.error_message
    assert time.monotonic() - started < 15


def test_a_model_past_the_run_deadline_is_cut_off_and_keeps_its_partial_text(worker_factory, user):
    worker_factory(ARBOR_RUN_DEADLINE_SECONDS="4")
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="[[tokens:100]] [[delay:0.3]]")
    run = finished_run(run.pk, timeout=20)
    assert run.status == RunStatus.FAILED and run.error_type == "deadline", (run.error_type, run.error_message)
    assert "deadline of 4 s" in run.error_message
    partial = Message.objects.get(run=run, position=1)
    assert partial.metadata == {"partial": True} and 3 <= len(partial.content.split()) < 100
    assert (run.finished_at - run.started_at).total_seconds() < 6


def test_a_body_that_is_not_a_chat_stream_is_named_as_such(worker_factory, user):
    worker_factory()
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="[[garbage]]")
    run = finished_run(run.pk, timeout=20)
    assert run.status == RunStatus.FAILED and run.attempts == 1
    assert "not a chat-completion stream (content type text/html)" in run.error_message
