"""Process control shared by the tests and the benchmarks: free ports, the web server (uvicorn) and
Celery workers as child processes with their logs, headless Chromium, and waiting for a condition.
Fixtures that use these live in ``tests/conftest.py``; ``bench`` imports them from here."""

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
from django.conf import settings

from tests.llm_server import FakeLLMServer

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def purge_broker() -> None:
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


def _answering(proc: Proc, probe: str, what: str, seconds: float = 30) -> Proc:
    """``proc`` once ``GET probe`` answers (any status); else it is stopped and RuntimeError says
    why, with the end of its log."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            httpx.get(probe, timeout=1)
            return proc
        except httpx.HTTPError:
            if proc.popen.poll() is not None:
                break
            time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"{what} did not start:\n{proc.output()[-3000:]}")


def start_model_server(proc_log_dir) -> tuple[Proc, str]:
    """The scripted model (:mod:`tests.llm_server`) in a process of its own, so that its CPU is not
    the caller's (a benchmark's clients share no interpreter lock with it); returns the process and
    its base URL (``http://127.0.0.1:<port>/v1``) once it answers. Its recorded requests stay in
    that process."""
    port = free_port()
    proc = Proc("model", [sys.executable, "-m", "tests.llm_server", str(port)], dict(os.environ), proc_log_dir)
    url = f"http://127.0.0.1:{port}/v1"
    return _answering(proc, f"{url}/models", "the scripted model"), url


def start_web(llm_server, proc_log_dir, workers: int = 1, name: str = "uvicorn", **extra_env) -> tuple[Proc, str]:
    """Arbor under uvicorn (real ASGI, real streaming) on a free loopback port with ``workers``
    processes and ``extra_env``; returns the process and its base URL once it answers."""
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning"]
    proc = Proc(name, args, child_env(llm_server, **extra_env), proc_log_dir)
    url = f"http://127.0.0.1:{port}"
    return _answering(proc, f"{url}/accounts/login/", "uvicorn"), url


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


def streamed_a_token(run_id) -> bool:
    """True once a run's stream holds a text delta: the first token arrived (the engine writes the
    run's ``first_token_at`` only with its final state)."""
    from streams.backends import get_stream

    return any(event.type == "delta" for event in get_stream().events(run_id))
