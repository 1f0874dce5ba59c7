"""A whole Arbor of the chaos suite's own: a PostgreSQL cluster (initdb under a temp dir, another
port), a Redis (broker, streams and cache) and the scripted model server, each a process the test
starts and stops; and Arbor itself (uvicorn, the runs worker, the CPU worker, beat) under
supervisord with config/supervisord.conf, as `make run` and production run it. A scenario kills
by PID; the machine's own PostgreSQL and Redis are never touched. The stack is driven only
through its HTTP API, as a client would, and inspected with SQL on its own database.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
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


class FakeModel:
    """The scripted model server (:mod:`tests.llm_server`) as a process of its own on a fixed port,
    so a scenario can kill it mid-answer and start it again at the same address."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_dir = log_dir
        self.proc: Proc | None = None

    def start(self) -> None:
        self.proc = Proc("chaos-model", [sys.executable, "-m", "tests.llm_server", str(self.port)],
                         {**os.environ, "PYTHONUNBUFFERED": "1"}, self.log_dir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the model server did not start:\n{self.proc.output()[-2000:]}")

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


PROGRAMS = ("web", "runs", "worker", "beat")  # config/supervisord.conf's programs the stack runs (no local model)


class Stack:
    """Arbor's processes under supervisord with the production file (``config/supervisord.conf``, as
    ``make run`` starts it) against a PostgreSQL, a Redis and a model server of the test's own: any
    of those three the test stops and starts itself (``restarted by: test``); a program of
    supervisord's that dies is started again by supervisord (``restarted by: supervisor``), which
    :meth:`pids` before and after a scenario shows."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.pg = OwnPostgres()
        self.pg.start()
        with psycopg.connect(self.pg.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE arbor_chaos")
        self.redis = OwnRedis()
        self.redis.start()
        self.model = FakeModel(log_dir)
        self.model.start()
        self.web_port = free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        var = log_dir / "var"
        var.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.base", "DATABASE_URL": self.pg.url,
            "CELERY_BROKER_URL": self.redis.url, "REDIS_URL": self.redis.url, "ARBOR_STREAM_URL": self.redis.url,
            "OPENAI_BASE_URL": self.model.url, "ARBOR_MODEL": "fake-model", "ARBOR_RUN_RATE": "",
            "ARBOR_VAR_DIR": str(var), "ARBOR_STALE_RUN_SECONDS": "4", "ARBOR_REQUEUE_AFTER_SECONDS": "8",
            "ARBOR_REAP_EVERY_SECONDS": "2", "ARBOR_MODEL_READ_TIMEOUT": "3",
            # a run's deadline covers supervisord starting a killed worker again on 2 busy cores
            "ARBOR_RUN_DEADLINE_SECONDS": "60", "ARBOR_LOCAL_MODEL_URL": self.model.url,
            "PYTHONUNBUFFERED": "1",
            # what `make run` exports for config/supervisord.conf
            "ARBOR_PYTHON": sys.executable, "ARBOR_PORT": str(self.web_port), "ARBOR_WEB_WORKERS": "2",
            "ARBOR_MODEL_PORT": str(self.model.port), "ARBOR_LOCAL_MODEL": "false", "ARBOR_RUN_CONCURRENCY": "16",
            "ARBOR_RUN_QUEUE": "runs", "ARBOR_LOG_LEVEL": "info",
        }
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=self.env, check=True, cwd=ROOT)
        out = subprocess.run([*manage, "create_api_token", "chaos"], env=self.env, check=True, cwd=ROOT,
                             capture_output=True, text=True).stdout
        self.token = out.strip().splitlines()[-1].split()[-1]
        self.supervisord = Proc("chaos-supervisord", [str(Path(sys.executable).parent / "supervisord"), "-c",
                                                      str(ROOT / "config" / "supervisord.conf")], self.env, log_dir)
        self.wait_ready()

    # --- supervisord ------------------------------------------------------------------------------

    def output(self) -> str:
        """Everything the supervised programs printed (supervisord's stdout, as `make run` shows it)."""
        return self.supervisord.output()

    def ctl(self, *args: str) -> str:
        return subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c",
                               str(ROOT / "config" / "supervisord.conf"), *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=30).stdout

    def pids(self) -> dict[str, int]:
        """The PID of each supervised program (0 while it is not running)."""
        found = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if parts and parts[0] in PROGRAMS:
                found[parts[0]] = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[1] == "RUNNING" else 0
        return found

    def wait_ready(self, timeout: float = 90) -> None:
        """Until every program runs, the web server answers and both workers said ``ready.``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.supervisord.popen.poll() is not None:
                break
            pids = self.pids()
            if len(pids) == len(PROGRAMS) and all(pids.values()) and self.output().count(" ready.") >= 2:
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(f"{self.base}/accounts/login/", timeout=2)
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the supervised stack did not start:\n{self.output()[-3000:]}")

    def kill_program(self, name: str) -> int:
        """SIGKILL a supervised program's process group (as the OOM killer or a crash would); its PID."""
        pid = self.pids()[name]
        if os.getpgid(pid) == os.getpgid(self.supervisord.popen.pid):  # never supervisord itself
            os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pids().get(name, 0)
            if pid and pid != old_pid:
                return pid
            time.sleep(0.3)
        raise RuntimeError(f"supervisord did not start {name} again")

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
        """supervisord stops its programs (SIGTERM, each within its stopwaitsecs), then the rest."""
        if self.supervisord.popen.poll() is None:
            self.supervisord.popen.send_signal(signal.SIGTERM)
            try:
                self.supervisord.popen.wait(90)
            except subprocess.TimeoutExpired:
                self.supervisord.kill()
        self.supervisord.stop()
        self.model.stop()
        self.redis.stop()
        self.pg.destroy()
