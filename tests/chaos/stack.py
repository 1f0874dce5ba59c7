"""A whole Arbor of the chaos suite's own: a PostgreSQL cluster (initdb under a temp dir, another
port), a Redis (broker, streams and cache), the scripted model, uvicorn, a run worker (threads) and
beat. Every part is a process this module started, so a scenario may kill or restart any of them
(by PID; the machine's own PostgreSQL and Redis are never touched). The stack is driven only
through its HTTP API, as a client would, and inspected with SQL on its own database.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import redis

from tests.support.processes import ROOT, Proc, free_port

PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]) if glob.glob("/usr/lib/postgresql/*/bin") else None
FINISHED = {"succeeded", "failed", "cancelled"}


def _as_postgres(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True,
                          **kwargs)


class OwnPostgres:
    """A PostgreSQL cluster under a temp dir on a free port, trust auth, stopped and started by pg_ctl."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="arbor-chaos-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/arbor_chaos"

    def start(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                     "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def sql(self, query: str, *params) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRedis:
    """A redis-server on a free port without persistence (a restart loses everything in it)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def queue_length(self, name: str = "runs") -> int:
        return int(redis.Redis.from_url(self.url).llen(name))


class Stack:
    """The processes, the API token and helpers to drive them."""

    def __init__(self, model_url: str, log_dir: Path):
        self.log_dir = log_dir
        self.pg = OwnPostgres()
        self.pg.start()
        with psycopg.connect(self.pg.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE arbor_chaos")
        self.redis = OwnRedis()
        self.redis.start()
        self.env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.base", "DATABASE_URL": self.pg.url,
            "CELERY_BROKER_URL": self.redis.url, "REDIS_URL": self.redis.url, "ARBOR_STREAM_URL": self.redis.url,
            "OPENAI_BASE_URL": model_url, "ARBOR_MODEL": "fake-model", "ARBOR_RUN_RATE": "",
            "ARBOR_VAR_DIR": str(log_dir / "var"), "ARBOR_STALE_RUN_SECONDS": "4", "ARBOR_REQUEUE_AFTER_SECONDS": "8",
            "ARBOR_REAP_EVERY_SECONDS": "2", "ARBOR_MODEL_READ_TIMEOUT": "3", "ARBOR_RUN_DEADLINE_SECONDS": "25",
            "PYTHONUNBUFFERED": "1",
        }
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=self.env, check=True, cwd=ROOT)
        out = subprocess.run([*manage, "create_api_token", "chaos"], env=self.env, check=True, cwd=ROOT,
                             capture_output=True, text=True).stdout
        self.token = out.strip().splitlines()[-1].split()[-1]
        self.procs: dict[str, Proc] = {}
        self.web_port = free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.start("web")
        self.start("worker")
        self.start("beat")

    def start(self, name: str, concurrency: int = 16) -> Proc:
        celery = [sys.executable, "-m", "celery", "-A", "config"]
        args = {
            "web": [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                    "--port", str(self.web_port), "--workers", "2", "--log-level", "warning"],
            "worker": [*celery, "worker", "-l", "info", "-P", "threads", "-c", str(concurrency),
                       "-Q", "runs,celery,maintenance", "--without-mingle", "--without-gossip",
                       "-n", f"chaos-{time.time_ns()}@%h"],
            "beat": [*celery, "beat", "-l", "info", "-s", str(self.log_dir / f"beat-{time.time_ns()}")],
        }[name]
        proc = Proc(f"chaos-{name}", args, self.env, self.log_dir)
        self.procs[name] = proc
        deadline = time.time() + 60
        while time.time() < deadline:
            if name == "web":
                try:
                    httpx.get(f"{self.base}/accounts/login/", timeout=1)
                    return proc
                except httpx.HTTPError:
                    pass
            elif name == "worker" and "ready." in proc.output() or name == "beat" and "beat: Starting" in proc.output():
                return proc
            if proc.popen.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not start:\n{proc.output()[-3000:]}")

    def restart_worker(self, concurrency: int = 16) -> Proc:
        """Stop the run worker (SIGTERM, waiting for it) and start one with ``concurrency`` threads."""
        self.procs["worker"].stop()
        return self.start("worker", concurrency=concurrency)

    # --- the API, as a client uses it --------------------------------------------------------------

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def start_runs(self, n: int, script: str, label: str) -> list[str]:
        ids = []
        with httpx.Client(timeout=30, headers=self.auth) as client:
            for i in range(n):
                session = client.post(f"{self.base}/api/sessions", json={"title": f"{label} {i}"}).json()["id"]
                response = client.post(f"{self.base}/api/sessions/{session}/runs",
                                       json={"input": f"{label} {i} {script}"})
                assert response.status_code == 202, response.text
                ids.append(response.json()["run_id"])
        return ids

    def run(self, run_id: str) -> dict:
        return httpx.get(f"{self.base}/api/runs/{run_id}", headers=self.auth, timeout=10).json()

    def wait_finished(self, run_ids: list[str], timeout: float) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        states: dict[str, dict] = {}
        while time.monotonic() < deadline:
            for run_id in run_ids:
                if states.get(run_id, {}).get("status") not in FINISHED:
                    with contextlib.suppress(httpx.HTTPError, json.JSONDecodeError):  # mid-restart: ask again
                        states[run_id] = self.run(run_id)
            if all(states.get(r, {}).get("status") in FINISHED for r in run_ids):
                break
            time.sleep(0.5)
        return states

    def read_stream(self, run_id: str, results: dict, timeout: float = 90) -> None:
        """Read the run's SSE stream until ``done``, reconnecting with Last-Event-ID as a browser
        does; ``results[run_id] = {"done": bool, "reconnects": int}``."""
        last_id, reconnects, done = None, 0, False
        deadline = time.monotonic() + timeout
        while not done and time.monotonic() < deadline:
            headers = {**self.auth, **({"Last-Event-ID": last_id} if last_id else {})}
            try:
                with httpx.Client(timeout=httpx.Timeout(5, read=40)) as client, client.stream(
                        "GET", f"{self.base}/api/runs/{run_id}/events", headers=headers) as response:
                    event = None
                    for line in response.iter_lines():
                        if line.startswith("id: "):
                            last_id = line[4:]
                        elif line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event == "done":
                            done = True
                            break
            except httpx.HTTPError:
                pass
            if not done:
                reconnects += 1
                time.sleep(1)
        results[run_id] = {"done": done, "reconnects": reconnects}

    def duplicated(self, run_ids: list[str]) -> int:
        """Runs with more than one final answer (assistant message without tool calls)."""
        rows = self.pg.sql(
            "SELECT run_id FROM conversations_message WHERE role = 'assistant' AND "
            "(tool_calls IS NULL OR tool_calls = 'null'::jsonb OR tool_calls = '[]'::jsonb) AND run_id::text = ANY(%s) "
            "GROUP BY run_id HAVING count(*) > 1", [run_ids])
        return len(rows)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        self.redis.stop()
        self.pg.destroy()
