"""A quiet console while nothing happens (issue 15): the periodic upkeep logs only when it acts.

Celery's own INFO lines about a periodic task (beat's "Sending due task", the worker's "Task ...
received" / "succeeded") become DEBUG (:class:`core.logs.PeriodicTasksAtDebug`); the reaper logs one
INFO line when it sent a run again and nothing (DEBUG) when it found nothing. Checked on the record
shapes Celery logs and on a real worker and beat reaping every 0.3 s.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from connections import local_model
from conversations.models import Run, RunStatus
from core.logs import PeriodicTasksAtDebug, periodic_task_names
from engine import recovery
from tests.support.factories import RunFactory
from tests.support.processes import ROOT, Proc, child_env, free_port, start_worker, wait_for

SCHEDULE = {"reap-stale-runs": {"task": "engine.reap_stale_runs", "schedule": 10.0}}


def record(name: str, level: int, msg: str, args) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_the_filter_demotes_celery_lines_about_periodic_tasks_only():
    quiet = PeriodicTasksAtDebug(periodic_task_names(SCHEDULE))
    logging.getLogger("celery.app.trace").setLevel(logging.INFO)
    logging.getLogger("celery.beat").setLevel(logging.INFO)
    periodic = [
        record("celery.beat", logging.INFO, "Scheduler: Sending due task %s (%s)",
               ("reap-stale-runs", "engine.reap_stale_runs")),
        record("celery.app.trace", logging.INFO, "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
               ({"name": "engine.reap_stale_runs", "id": "x", "runtime": 0.01, "return_value": "{}"},)),
    ]
    for rec in periodic:
        assert quiet.filter(rec) is False
        assert rec.levelno == logging.DEBUG and rec.levelname == "DEBUG"
    other = record("celery.app.trace", logging.INFO, "Task %(name)s[%(id)s] received",
                   ({"name": "engine.execute_run", "id": "y"},))
    failure = record("celery.app.trace", logging.ERROR, "Task %(name)s[%(id)s] raised: %(exc)s",
                     ({"name": "engine.reap_stale_runs", "id": "z", "exc": "boom"},))
    assert quiet.filter(other) is True and other.levelno == logging.INFO
    assert quiet.filter(failure) is True and failure.levelno == logging.ERROR
    logging.getLogger("celery.app.trace").setLevel(logging.DEBUG)  # asked for: shown, as DEBUG
    shown = record("celery.app.trace", logging.INFO, "Task %(name)s[%(id)s] received",
                   ({"name": "engine.reap_stale_runs", "id": "w"},))
    assert quiet.filter(shown) is True and shown.levelno == logging.DEBUG
    logging.getLogger("celery.app.trace").setLevel(logging.NOTSET)
    logging.getLogger("celery.beat").setLevel(logging.NOTSET)


@pytest.mark.django_db(transaction=True)  # the reaper closes old connections first
def test_a_reaper_pass_logs_info_only_when_it_acts(caplog, settings):
    caplog.set_level(logging.DEBUG, logger="engine.recovery")
    settings.ARBOR_REQUEUE_AFTER_SECONDS = 60
    recovery.reap_stale_runs()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.DEBUG, "reaper: nothing to recover")]
    caplog.clear()
    run = RunFactory(status=RunStatus.QUEUED, finished_at=None)
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(seconds=600))
    settings.ARBOR_RUN_QUEUE = f"nobody-{time.time_ns()}"  # the re-sent run waits there, unread
    assert recovery.reap_stale_runs()["queued_again"] == 1
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(
        logging.INFO, "reaper: 0 stale running run(s) sent again, 0 given up (failed), 1 queued run(s) sent again",
    )]


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_real_worker_and_beat_say_nothing_while_idle_and_one_line_when_the_reaper_acts(
        llm_server, proc_log_dir, tmp_path, settings):
    queue = f"maintenance-{time.time_ns()}"
    env = {"ARBOR_MAINTENANCE_QUEUE": queue, "ARBOR_REAP_EVERY_SECONDS": "0.3", "ARBOR_REQUEUE_AFTER_SECONDS": "1",
           "ARBOR_RUN_QUEUE": f"nobody-{time.time_ns()}"}
    worker = start_worker(llm_server, proc_log_dir, name="quiet-worker", queue=queue, **env)
    beat = Proc("quiet-beat", [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "info",
                               "-s", str(tmp_path / "beat-schedule")], child_env(llm_server, **env), proc_log_dir)
    try:
        wait_for(lambda: "beat: Starting..." in beat.output(), timeout=30, message="beat")
        time.sleep(4)  # ~13 reaper passes
        idle = worker.output().split(" ready.", 1)[1]
        assert "reap" not in idle.lower() and "reap" not in beat.output().split("beat: Starting...", 1)[1].lower()
        assert "INFO" not in idle, idle

        run = RunFactory(status=RunStatus.QUEUED, finished_at=None)
        Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(seconds=30))
        wait_for(lambda: "reaper: 0 stale running run(s) sent again, 0 given up (failed), 1 queued run(s) sent again"
                 in worker.output(), timeout=20, message="the reaper's line")
        time.sleep(2)
        acted = worker.output().split(" ready.", 1)[1]
        assert acted.count("reaper:") == 1, acted  # the next passes wait for the run's back-off: quiet again
        assert "Task engine.reap_stale_runs" not in acted
    finally:
        beat.stop()
        worker.stop()


def test_the_model_server_launcher_prints_the_end_of_its_log_when_the_server_dies(tmp_path, capsys):
    log = tmp_path / "var" / "model-server.log"
    command = [sys.executable, "-c", "import sys; [print('loading layer', i) for i in range(500)]; sys.exit(3)"]
    assert local_model.serve(command, env={}, url="http://127.0.0.1:9/v1", log=log) == 3
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"The local model server ended (status 3) before it answered; the end of {log}:"
    assert out[1:] == [f"loading layer {i}" for i in range(480, 500)]
    assert log.read_text().splitlines()[1:] == [f"loading layer {i}" for i in range(500)]  # after its === header


@pytest.mark.local_model
def test_the_local_model_prints_one_line_when_ready_and_its_loader_output_goes_to_the_log(tmp_path):
    port = free_port()
    log = tmp_path / "model-server.log"
    proc = subprocess.Popen([sys.executable, "-m", "connections.local_model", "--port", str(port), "--log", str(log)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        first = proc.stdout.readline().strip()
        assert re.fullmatch(rf"Local model smollm2-135m-instruct ready on http://127\.0\.0\.1:{port}/v1 in [\d.]+ s "
                            rf"\(its log: {re.escape(str(log))}\)", first), first
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 200
        assert len(log.read_text().splitlines()) > 100  # llama.cpp's loader output, not on the console
        proc.send_signal(signal.SIGTERM)  # passed on to the server
        proc.wait(30)
        rest = proc.stdout.read()
        assert "llama" not in rest.lower(), rest
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
