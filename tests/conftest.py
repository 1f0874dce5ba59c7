"""Shared fixtures: the scripted model server, a real Celery worker process and a real ASGI server.

Processes started here talk to the same test database as the tests (PostgreSQL when
``DATABASE_URL`` is set, else a SQLite file) and the same broker (Redis when ``CELERY_BROKER_URL``
is set, else kombu's filesystem transport). Tests that need them use ``transaction=True`` so their
rows are committed and visible to the other processes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.llm_server import FakeLLMServer
from tests.support.processes import (
    Proc,
    free_port,
    purge_broker,
    start_web,
    start_worker,
)


@pytest.fixture(scope="session")
def llm_server():
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _model_endpoint(settings, llm_server):
    """Every test talks to the scripted model server unless it says otherwise."""
    settings.OPENAI_BASE_URL = llm_server.base_url
    settings.ARBOR_MODEL = "fake-model"
    llm_server.reset()








@pytest.fixture(scope="session")
def proc_log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("procs")






@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, llm_server, proc_log_dir):
    """One real Celery worker process for the session (threads pool, the run queue and "celery")."""
    purge_broker()
    proc = start_worker(llm_server, proc_log_dir, ARBOR_STALE_RUN_SECONDS="3")
    yield proc
    proc.stop()


@pytest.fixture
def worker_factory(django_db_setup, llm_server, proc_log_dir, settings):
    """Start extra workers a test may kill, on a queue of their own (the session worker does not
    compete for this test's runs); all are stopped afterwards."""
    procs: list[Proc] = []
    queue = f"isolated-{time.time_ns()}"
    settings.ARBOR_RUN_QUEUE = queue

    def make(**extra_env) -> Proc:
        proc = start_worker(llm_server, proc_log_dir, name="extra-worker", queue=queue,
                            **{"ARBOR_RUN_QUEUE": queue, **extra_env})
        procs.append(proc)
        return proc

    yield make
    for proc in procs:
        proc.stop()




@pytest.fixture
def unconsumed_run_queue(settings):
    """Runs started in this test are queued where no worker listens, for a test that executes them
    itself (``engine.execute.run_execute`` in its own process). A ``transaction=True`` test commits,
    so ``run_start``'s task is really sent (capturing the on-commit callbacks does not hold them
    back), and the session's worker, once started, raced the test for the claim. The queue is purged
    afterwards."""
    from config.celery import app

    queue = f"unconsumed-{time.time_ns()}"
    settings.ARBOR_RUN_QUEUE = queue
    yield queue
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, llm_server, proc_log_dir):
    """Arbor under uvicorn on a free loopback port; yields its base URL."""
    proc, url = start_web(llm_server, proc_log_dir)
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def local_model(proc_log_dir):
    """The real local model (SmolLM2-135M-Instruct under llama-cpp-python's server); yields its base URL."""
    port = free_port()
    proc = Proc("local-model",
                [sys.executable, "-m", "connections.local_model", "--port", str(port), "--n-ctx", "8192"],
                dict(os.environ), proc_log_dir)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.popen.poll() is not None:
            raise RuntimeError(proc.output()[-3000:])
        time.sleep(0.5)
    else:
        proc.stop()
        raise RuntimeError("the local model server did not start in 120 s")
    yield url
    proc.stop()


@pytest.fixture
def user(db):
    from tests.support.factories import UserFactory

    return UserFactory()


@pytest.fixture
def other_user(db):
    from tests.support.factories import UserFactory

    return UserFactory()


@pytest.fixture
def api_token(user) -> str:
    from accounts.models import ApiToken

    return ApiToken.issue(user=user)[1]


@pytest.fixture
def api(client, user):
    """Django's test client, logged in as ``user`` (JSON helpers for the API)."""
    client.force_login(user)
    return client


# Playwright's sync API runs an event loop in the test thread, which trips Django's async-safety
# check on the ORM calls a browser test makes itself (factories, assertions): the check is switched
# off (DJANGO_ALLOW_ASYNC_UNSAFE) only while a browser test's body runs. The ASGI server and the
# worker start during set-up, so those child processes keep the check on.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if item.get_closest_marker("browser") is None:
        return (yield)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        return (yield)
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
