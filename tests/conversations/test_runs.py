"""Runs executed by a real Celery worker process against the scripted model server (real HTTP+SSE)."""

from __future__ import annotations

import json
import time

import pytest

from conversations import context_spec as ctx
from conversations import services
from conversations.models import Message, Run, RunStatus, Step, StepKind
from engine import execute, recovery
from engine.tasks import execute_run
from tests.support.factories import SessionFactory
from tests.support.processes import streamed_a_token, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def finished(run_id, timeout=30.0) -> Run:
    return wait_for(lambda: (r := Run.objects.get(pk=run_id)).is_finished and r, timeout,
                    message=f"run {run_id} to finish")


def test_run_streams_stores_answer_usage_and_timings(celery_worker, llm_server, user):
    """A run goes queued → running → succeeded; the answer, usage, timings and trace are stored."""
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="hello there")
    run = finished(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    answer = Message.objects.get(run=run, position=1)
    assert answer.role == "assistant" and answer.content == "Echo: hello there"
    assert run.prompt_tokens > 0 and run.completion_tokens == 3 and not run.usage_counted
    assert run.created_at <= run.started_at <= run.first_token_at <= run.finished_at
    assert list(Step.objects.filter(run=run).values_list("kind", flat=True)) == [StepKind.LLM_CALL]
    sent = llm_server.requests[-1]["body"]["messages"]
    assert sent == [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "hello there"}]


def test_context_is_the_path_and_rebuilds_exactly(celery_worker, llm_server, user):
    """The second turn sends turn one and its answer; the stored spec rebuilds the same messages."""
    session = SessionFactory(owner=user)
    first = finished(services.run_start(session=session, input="one").pk)
    second = finished(services.run_start(session=session, input="two").pk)
    assert second.parent_run_id == first.pk
    sent = llm_server.requests[-1]["body"]["messages"]
    assert [m["content"] for m in sent] == ["You are a helpful assistant.", "one", "Echo: one", "two"]
    step = Step.objects.get(run=second, kind=StepKind.LLM_CALL)
    assert ctx.rebuild(second, step.request["context"]) == sent
    assert ctx.digest(sent) == step.request["sha256"]


def test_usage_is_counted_when_the_endpoint_sends_none(celery_worker, user):
    session = SessionFactory(owner=user)
    run = finished(services.run_start(session=session, input="count me [[no_usage]]").pk)
    assert run.status == RunStatus.SUCCEEDED
    assert run.usage_counted and run.prompt_tokens > 0 and run.completion_tokens > 0


@pytest.mark.parametrize(
    ("directive", "error_type"),
    [
        ("[[status:400]]", "http_error"),
        ("[[break_after:3]]", "broken_stream"),
        ("[[malformed]]", "malformed_response"),
    ],
)
def test_failures_are_readable_and_keep_partial_text(celery_worker, user, directive, error_type):
    session = SessionFactory(owner=user)
    run = finished(services.run_start(session=session, input=f"fail please {directive}").pk)
    assert run.status == RunStatus.FAILED
    assert run.error_type == error_type and run.error_message
    if directive == "[[break_after:3]]":
        partial = Message.objects.get(run=run, position=1)
        assert partial.content == "Echo: fail please" and partial.metadata["partial"] is True


def test_transient_errors_are_retried_with_backoff(celery_worker, llm_server, user):
    """Two 503s, then success: Celery retries the task; the run succeeds with one answer."""
    session = SessionFactory(owner=user)
    run = finished(services.run_start(session=session, input="flaky [[fail_first:2]]").pk, timeout=60)
    assert run.status == RunStatus.SUCCEEDED and run.attempts == 3
    assert Message.objects.filter(run=run, role="assistant").count() == 1
    assert len(llm_server.requests) == 3


def test_persistent_5xx_fails_after_retries(celery_worker, user):
    session = SessionFactory(owner=user)
    run = finished(services.run_start(session=session, input="down [[status:503]]").pk, timeout=90)
    assert run.status == RunStatus.FAILED and run.error_type == "http_error" and "503" in run.error_message
    assert run.attempts == 4


def test_cancel_stops_generation_within_a_second(celery_worker, user):
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="long [[tokens:2000]] [[delay:0.02]]")
    wait_for(lambda: streamed_a_token(run.pk), message="first token")
    services.run_cancel(run=Run.objects.get(pk=run.pk))

    cancelled_at = time.monotonic()
    stopped = wait_for(lambda: (r := Run.objects.get(pk=run.pk)).finished_at and r, timeout=5)
    assert time.monotonic() - cancelled_at < 1.0
    assert stopped.status == RunStatus.CANCELLED
    partial = Message.objects.get(run=run, position=1).content
    assert partial.startswith("w0 w1") and len(partial.split()) < 2000


def test_redelivered_task_never_duplicates(celery_worker, user):
    """Running the task again for a finished run changes nothing (claim by conditional update)."""
    session = SessionFactory(owner=user)
    run = finished(services.run_start(session=session, input="once").pk)
    execute.run_execute(run_id=str(run.pk))
    execute_run.delay(str(run.pk))

    time.sleep(1)
    assert Message.objects.filter(run=run).count() == 2
    assert Run.objects.get(pk=run.pk).attempts == 1


def test_worker_killed_mid_run_is_recovered(worker_factory, user, settings):
    """SIGKILL the worker mid-stream: the reaper sees the stale heartbeat, a live worker reclaims the
    run, regenerates the answer from the start and writes it once; clients get a restart event."""
    from streams.backends import get_stream

    doomed = worker_factory(ARBOR_STALE_RUN_SECONDS="2")
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="survive [[tokens:300]] [[delay:0.02]]")
    wait_for(lambda: streamed_a_token(run.pk), message="first token")
    doomed.kill()
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    worker_factory(ARBOR_STALE_RUN_SECONDS="2")
    settings.ARBOR_STALE_RUN_SECONDS = 2
    wait_for(lambda: recovery.reap_stale_runs()["requeued"], timeout=15, interval=0.5, message="reaper")
    run = finished(run.pk, timeout=30)
    assert run.status == RunStatus.SUCCEEDED and run.attempts == 2
    answer = Message.objects.filter(run=run, role="assistant")
    assert answer.count() == 1 and len(answer.get().content.split()) == 300
    assert "restart" in [e.type for e in get_stream().events(run.pk)]


def test_run_given_up_after_repeated_worker_loss_keeps_partial_text(user, settings):
    """A run whose workers keep dying is failed by the reaper with a readable reason and its partial text."""
    from django.utils import timezone

    from streams.backends import get_stream

    session = SessionFactory(owner=user)
    run = Run.objects.create(session=session, depth=0, model="fake-model", status=RunStatus.RUNNING, attempts=3,
                             heartbeat_at=timezone.now() - timezone.timedelta(minutes=5))
    Message.objects.create(run=run, position=0, role="user", content="hi")
    stream = get_stream()
    stream.publish(run.pk, "delta", {"text": "partial "})
    stream.publish(run.pk, "delta", {"text": "answer"})
    counts = recovery.reap_stale_runs()
    run.refresh_from_db()
    assert counts["failed"] == 1 and run.status == RunStatus.FAILED and run.error_type == "worker_lost"
    assert Message.objects.get(run=run, position=1).content == "partial answer"
    assert json.dumps(stream.events(run.pk)[-1].data).find("worker_lost") > 0


def _queue_length(name: str) -> int:
    from config.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue=name, passive=True).message_count


def test_reaper_sends_a_backlog_again_with_back_off_not_every_pass(user, settings):
    """50 runs queued for longer than ARBOR_REQUEUE_AFTER_SECONDS on a queue no worker reads: five
    minutes of reaper passes (every 10 s) send each run once, not 30 times; once its back-off
    (doubled: 240 s) has passed, once more."""
    from datetime import timedelta

    from django.utils import timezone

    from config.celery import app

    settings.ARBOR_RUN_QUEUE = f"backlog-{time.time_ns()}"
    settings.ARBOR_REQUEUE_AFTER_SECONDS = 120
    session = SessionFactory(owner=user)
    created = timezone.now() - timedelta(seconds=130)
    runs = [Run.objects.create(session=session, depth=0, model="fake-model", status=RunStatus.QUEUED,
                               created_at=created) for _ in range(50)]
    try:
        sent = sum(recovery.reap_stale_runs()["queued_again"] for _ in range(30))
        assert sent == 50 and _queue_length(settings.ARBOR_RUN_QUEUE) == 50
        assert set(Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("requeues", flat=True)) == {1}
        Run.objects.filter(pk__in=[r.pk for r in runs]).update(requeued_at=timezone.now() - timedelta(seconds=230))
        assert recovery.reap_stale_runs()["queued_again"] == 0, "the back-off doubled: 240 s"
        Run.objects.filter(pk__in=[r.pk for r in runs]).update(requeued_at=timezone.now() - timedelta(seconds=241))
        assert recovery.reap_stale_runs()["queued_again"] == 50
        assert _queue_length(settings.ARBOR_RUN_QUEUE) == 100
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(settings.ARBOR_RUN_QUEUE)


def test_200_concurrent_runs_stay_within_the_connection_pool(worker_factory, user, settings):
    """200 runs at once on a worker of 200 threads whose pool holds 4 connections: every run succeeds
    and the worker never has more than 4 PostgreSQL connections open (its threads borrow one for a
    query and give it back while they wait on the model; one watcher thread serves them all)."""
    import threading

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's (Django's psycopg pool)")
    name = f"arbor-pool-test-{time.time_ns()}"
    worker_factory(ARBOR_DB_POOL_SIZE="4", ARBOR_DB_APPLICATION_NAME=name, concurrency=200)
    peak = {"connections": 0}
    stop = threading.Event()

    def sample() -> None:
        import psycopg

        params = connection.get_connection_params()
        conninfo = {k: params[k] for k in ("dbname", "user", "host", "port") if params.get(k)}
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            while not stop.wait(0.05):
                count = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                     [name]).fetchone()[0]
                peak["connections"] = max(peak["connections"], count)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        runs = [services.run_start(session=SessionFactory(owner=user), input=f"pool {i} [[tokens:20]] [[delay:0.1]]")
                for i in range(200)]
        finished_runs = [finished(run.pk, timeout=120) for run in runs]
    finally:
        stop.set()
        sampler.join()
    assert all(run.status == RunStatus.SUCCEEDED for run in finished_runs)
    assert 1 <= peak["connections"] <= 4, peak
