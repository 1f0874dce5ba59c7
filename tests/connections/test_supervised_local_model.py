"""`make run`'s process tree under supervisord (config/supervisord.conf) with the real local model:
killing the model server mid-answer fails that run with a clear reason, leaves web, workers and beat
running (same PIDs), the supervisor starts the model again, and the next turn answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conversations import services
from conversations.models import Message, Run, RunStatus
from tests.support.factories import SessionFactory
from tests.support.processes import ROOT, Proc, child_env, free_port, streamed_a_token, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.local_model, pytest.mark.worker]
MODEL = "smollm2-135m-instruct"
SUPERVISED = ("model", "web", "runs", "worker", "beat")


def _ctl(env: dict, *args: str) -> str:
    return subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", "config/supervisord.conf", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30).stdout


def _pids(env: dict) -> dict[str, int]:
    pids = {}
    for name in SUPERVISED:
        text = _ctl(env, "pid", name).strip()
        pids[name] = int(text) if text.isdigit() else 0
    return pids


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def stack(llm_server, proc_log_dir, tmp_path, settings):
    web_port, model_port = free_port(), free_port()
    model_url = f"http://127.0.0.1:{model_port}/v1"
    queue = f"supervised-{time.time_ns()}"
    settings.ARBOR_RUN_QUEUE, settings.OPENAI_BASE_URL, settings.ARBOR_MODEL = queue, model_url, MODEL
    env = child_env(llm_server, OPENAI_BASE_URL=model_url, ARBOR_LOCAL_MODEL_URL=model_url, ARBOR_MODEL=MODEL,
                    ARBOR_PYTHON=sys.executable, ARBOR_VAR_DIR=str(tmp_path), ARBOR_PORT=str(web_port),
                    ARBOR_MODEL_PORT=str(model_port), ARBOR_LOCAL_MODEL="true", ARBOR_WEB_WORKERS="1",
                    ARBOR_RUN_CONCURRENCY="4", ARBOR_RUN_QUEUE=queue, ARBOR_LOG_LEVEL="info")
    proc = Proc("supervisord", [str(Path(sys.executable).parent / "supervisord"), "-c", "config/supervisord.conf"],
                env, proc_log_dir)
    try:
        wait_for(lambda: _answers(f"{model_url}/models"), timeout=180, interval=0.5, message="the local model")
        wait_for(lambda: _answers(f"http://127.0.0.1:{web_port}/accounts/login/"), timeout=60, interval=0.5,
                 message="the web process")
        wait_for(lambda: all(_pids(env).values()), timeout=60, interval=0.5, message="every process")
        yield {"env": env, "web": f"http://127.0.0.1:{web_port}", "model": model_url, "proc": proc}
    finally:
        proc.stop()


def _llama_server_pid(wrapper_pid: int) -> int:
    children = Path(f"/proc/{wrapper_pid}/task/{wrapper_pid}/children").read_text().split()
    assert children, "the model wrapper has no llama_cpp.server child"
    return int(children[0])


def _finished(pk) -> Run | None:
    run = Run.objects.get(pk=pk)
    return run if run.is_finished else None


def test_killing_the_local_model_mid_answer_leaves_the_dashboard_up(stack, user):
    env = stack["env"]
    session = SessionFactory(owner=user)
    before = _pids(env)
    long = services.run_start(session=session, model=MODEL, params={"max_tokens": 400, "temperature": 0.8},
                              input="Tell a very long story about a lighthouse keeper and her twelve cats.")
    wait_for(lambda: streamed_a_token(long.pk), timeout=180, interval=0.2, message="first token")
    os.kill(_llama_server_pid(before["model"]), signal.SIGKILL)

    long = wait_for(lambda: _finished(long.pk), timeout=120, interval=0.2, message="the cut run to finish")
    assert long.status == RunStatus.FAILED
    assert long.error["type"] == "broken_stream", long.error
    assert "local model is restarting" in long.error["message"], long.error
    assert Message.objects.get(run=long, position=1).content.strip(), "the partial answer was lost"
    assert _answers(f"{stack['web']}/accounts/login/"), "the dashboard went down with its model"

    wait_for(lambda: _answers(f"{stack['model']}/models"), timeout=180, interval=0.5, message="the model's restart")
    after = _pids(env)
    assert after["model"] != before["model"], "the supervisor did not start the model again"
    assert {k: after[k] for k in SUPERVISED if k != "model"} == {k: before[k] for k in SUPERVISED if k != "model"}

    nxt = services.run_start(session=SessionFactory(owner=user), model=MODEL, input="Say hello.",
                             params={"max_tokens": 12})
    nxt = wait_for(lambda: _finished(nxt.pk), timeout=180, interval=0.2, message="the next turn")
    assert nxt.status == RunStatus.SUCCEEDED, nxt.error
    assert stack["proc"].popen.poll() is None, "supervisord itself stopped"
