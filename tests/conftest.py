"""Shared fixtures: the scripted model server, a real Celery worker process and a real ASGI server.

Processes started here talk to the same test database as the tests (PostgreSQL when
``DATABASE_URL`` is set, else a SQLite file) and the same broker (Redis when ``CELERY_BROKER_URL``
is set, else kombu's filesystem transport). Tests that need them use ``transaction=True`` so their
rows are committed and visible to the other processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.llm_server import FakeLLMServer

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def child_env(llm_server: FakeLLMServer, **extra: str) -> dict:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": test_database_url(),
        "OPENAI_BASE_URL": llm_server.base_url,
        "ARBOR_MODEL": "fake-model",
        "ARBOR_STREAM_URL": settings.ARBOR_STREAM_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


class Proc:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: a worker that dies without cleaning up."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture(scope="session")
def proc_log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("procs")


def _purge_broker() -> None:
    from config.celery import app

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        app.control.purge()


def start_worker(llm_server, proc_log_dir, name="worker", queue=None, pool="threads", concurrency=16,
                 **extra_env) -> Proc:
    """A real Celery worker as production runs it: by default the threads pool on the run queue
    (model calls wait on the network) and the "celery" queue; ``pool="prefork"`` for the CPU worker."""
    queue = queue or f"{settings.ARBOR_RUN_QUEUE},celery"
    args = [sys.executable, "-m", "celery", "-A", "config", "worker", "-l", "info", "-P", pool, "-c", str(concurrency),
            "-Q", queue, "--without-mingle", "--without-gossip", "-n", f"{name}-{os.getpid()}-{time.time_ns()}@%h"]
    proc = Proc(name, args, child_env(llm_server, **extra_env), proc_log_dir)
    deadline = time.time() + 60
    while time.time() < deadline:
        if "ready." in proc.output():
            return proc
        if proc.popen.poll() is not None:
            break
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"Celery worker did not start:\n{proc.output()[-3000:]}")


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, llm_server, proc_log_dir):
    """One real Celery worker process for the session (threads pool, the run queue and "celery")."""
    _purge_broker()
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


def start_web(llm_server, proc_log_dir, workers: int = 1, name: str = "uvicorn", **extra_env) -> tuple[Proc, str]:
    """Arbor under uvicorn (real ASGI, real streaming) on a free loopback port with ``workers``
    processes and ``extra_env``; returns the process and its base URL once it answers."""
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning"]
    proc = Proc(name, args, child_env(llm_server, **extra_env), proc_log_dir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            httpx.get(f"{url}/accounts/login/", timeout=1)
            return proc, url
        except httpx.HTTPError:
            if proc.popen.poll() is not None:
                break
            time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"uvicorn did not start:\n{proc.output()[-3000:]}")


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
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def other_user(db):
    from tests.factories import UserFactory

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


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextlib.contextmanager
def launch_chromium():
    """Debian's Chromium (``make browser`` installs it) under Playwright; never a downloaded browser.
    A missing browser is an error, not a skip: the browser tests must not pass by not running."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium and chromium-driver)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
