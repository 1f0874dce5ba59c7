"""What ``make run``'s web server prints: uvicorn (its own process, ``--log-level info``) writes no
access line for static files or the favicon, keeps page and API lines (at ARBOR_ACCESS_LOG_LEVEL:
DEBUG hides them from an INFO console), and a run's stream prints no StreamingHttpResponse warning."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from tests.support.factories import RunFactory, SessionFactory, UserFactory
from tests.support.processes import Proc, child_env, free_port

pytestmark = pytest.mark.django_db(transaction=True)


def _serve(llm_server, log_dir, **env) -> tuple[Proc, str]:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "info"]
    proc = Proc("uvicorn-access", args, child_env(llm_server, **env), log_dir)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            httpx.get(f"{url}/static/arbor/favicon.svg", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.stop()
    raise RuntimeError(proc.output()[-2000:])


def _visit(url: str, user, run) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for path in ("/static/arbor/app.css", "/static/arbor/app.js", "/favicon.ico"):
            client.get(path)
        page = client.get("/accounts/login/")
        token = page.cookies["csrftoken"]
        client.post("/accounts/login/", headers={"Referer": f"{url}/accounts/login/"},
                    data={"username": user.username, "password": "pw-123456", "csrfmiddlewaretoken": token})
        assert client.get("/").status_code == 200
        stream = client.get(f"/s/{run.session_id}/runs/{run.pk}/stream")
        assert stream.status_code == 200 and "done" in stream.text


def test_access_lines_drop_static_files_and_follow_their_level(llm_server, tmp_path):
    user = UserFactory()
    run = RunFactory(session=SessionFactory(owner=user))
    proc, url = _serve(llm_server, tmp_path)
    try:
        _visit(url, user, run)
        time.sleep(0.5)
    finally:
        proc.stop()
    out = proc.output()
    print(out)
    assert '"GET /accounts/login/ HTTP/1.1" 200' in out
    assert '"GET / HTTP/1.1" 200' in out
    assert "/stream HTTP/1.1" in out
    assert "/static/" not in out and "/favicon.ico" not in out
    assert "StreamingHttpResponse" not in out and "Warning" not in out

    quiet, url = _serve(llm_server, tmp_path, ARBOR_ACCESS_LOG_LEVEL="DEBUG")
    try:
        _visit(url, user, run)
        time.sleep(0.5)
    finally:
        quiet.stop()
    assert '"GET /accounts/login/' not in quiet.output() and '"GET / HTTP' not in quiet.output()
