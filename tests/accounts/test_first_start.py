"""The first login cannot be lost (issue 15): ``ensure_admin`` keeps a generated password in
``var/admin-password`` (mode 0600) until it is changed, and ``start_banner`` prints, once the web
server answers, the URL, the administrator and the password or how to set one."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import update_last_login
from django.core.management import call_command

from accounts import first_start
from tests.support.processes import ROOT, child_env, free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def var_dir(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path / "var"
    monkeypatch.delenv("ARBOR_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("ARBOR_ADMIN_USER", raising=False)
    return settings.VAR_DIR


def ensure_admin() -> str:
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


def test_a_generated_password_is_kept_in_a_file_only_its_owner_can_read(var_dir):
    out = ensure_admin()
    path = var_dir / "admin-password"
    assert out.strip() == f"Arbor administrator created: user 'admin', generated password in {path}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#") and lines[1] == "user: admin" and lines[2].startswith("password: ")
    password = lines[2].removeprefix("password: ")
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password) and len(password) >= 16
    assert password not in out  # the console gets the file's name, the banner shows the password
    assert first_start.generated_password(admin) == password
    assert ensure_admin() == ""  # the next start: an administrator exists, nothing changes
    assert path.read_text().splitlines()[2] == f"password: {password}"


def test_an_existing_file_with_loose_permissions_is_tightened(var_dir):
    var_dir.mkdir(parents=True)
    (var_dir / "admin-password").write_text("old")
    (var_dir / "admin-password").chmod(0o644)
    ensure_admin()
    assert stat.S_IMODE((var_dir / "admin-password").stat().st_mode) == 0o600


def test_a_given_password_writes_no_file(var_dir, monkeypatch):
    monkeypatch.setenv("ARBOR_ADMIN_USER", "root")
    monkeypatch.setenv("ARBOR_ADMIN_PASSWORD", "correct horse battery")
    assert "user 'root' (password from ARBOR_ADMIN_PASSWORD)" in ensure_admin()
    assert not (var_dir / "admin-password").exists()
    banner = first_start.banner("http://127.0.0.1:8000/")
    assert "Administrator:  root" in banner
    assert ".venv/bin/python manage.py changepassword root" in banner
    assert "correct horse" not in banner


def test_the_file_goes_once_the_password_is_changed_not_on_a_login(var_dir):
    ensure_admin()
    admin = get_user_model().objects.get(username="admin")
    update_last_login(None, admin)  # save(update_fields=["last_login"]) on every login
    assert (var_dir / "admin-password").exists()
    banner = first_start.banner("http://127.0.0.1:8000/")
    password = (var_dir / "admin-password").read_text().splitlines()[2].removeprefix("password: ")
    assert f"Password:       {password}" in banner
    assert f"(generated; kept in {var_dir / 'admin-password'} until you change it)" in banner

    admin.set_password("a new password of mine")  # what `manage.py changepassword` and the admin site do
    admin.save()
    assert not (var_dir / "admin-password").exists()
    banner = first_start.banner("http://127.0.0.1:8000/")
    assert password not in banner
    assert "Password:       the one you set; to set a new one:" in banner
    assert ".venv/bin/python manage.py changepassword admin" in banner


def test_a_file_whose_password_was_changed_behind_its_back_is_not_shown(var_dir):
    ensure_admin()
    get_user_model().objects.filter(username="admin").update(password="!unusable")  # no save() signal
    assert "the one you set" in first_start.banner("http://127.0.0.1:8000/")
    assert not (var_dir / "admin-password").exists()


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):  # http.server's name
        self.send_response(302)
        self.send_header("Location", "/accounts/login/")
        self.end_headers()

    def log_message(self, *args):
        pass


def start_banner(llm_server, var_dir, url: str, *extra: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "start_banner", "--url", url, "--stay", *extra], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=child_env(llm_server, ARBOR_VAR_DIR=str(var_dir), **env),
    )


def stop(proc: subprocess.Popen) -> None:
    assert proc.poll() is None  # honcho would stop every process if this one ended
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == -signal.SIGTERM


@pytest.mark.django_db(transaction=True)  # the command runs in a child process: the admin must be committed
def test_start_banner_waits_for_the_web_server_then_prints_and_stays(var_dir, llm_server):
    queue = f"nobody-{time.time_ns()}"
    ensure_admin()
    password = (var_dir / "admin-password").read_text().splitlines()[2].removeprefix("password: ")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start_banner(llm_server, var_dir, url, "--worker-timeout", "2", ARBOR_RUN_QUEUE=queue)
    server = None
    try:
        time.sleep(2.5)
        assert proc.poll() is None
        server = HTTPServer(("127.0.0.1", port), _Hello)  # the web server answers only now
        threading.Thread(target=server.serve_forever, daemon=True).start()
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(7)]
        assert lines == [
            "=" * 72,
            f"  Arbor is ready: {url}",
            "  Administrator:  admin",
            f"  Password:       {password}",
            f"                  (generated; kept in {var_dir / 'admin-password'} until you change it)",
            "=" * 72,
            f"  No worker consumes the run queue {queue!r} yet: replies wait until one starts.",
        ]
        time.sleep(1)
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        if server is not None:
            server.shutdown()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_with_a_worker_on_the_run_queue_the_banner_is_all(var_dir, llm_server, celery_worker, asgi_server):
    ensure_admin()
    proc = start_banner(llm_server, var_dir, f"{asgi_server}/")
    try:
        out = [proc.stdout.readline().rstrip("\n") for _ in range(6)]
        assert out[1] == f"  Arbor is ready: {asgi_server}/" and out[-1] == "=" * 72
        time.sleep(3)
        stop(proc)
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()


def _supervisor_programs(tmp_path, local_model: str) -> dict:
    """config/supervisord.conf as supervisord itself reads it (its own parser, environment expanded)."""
    from supervisor.options import ServerOptions

    env = {"ARBOR_PYTHON": sys.executable, "ARBOR_VAR_DIR": str(tmp_path), "ARBOR_PORT": "8000",
           "ARBOR_MODEL_PORT": "8001", "ARBOR_LOCAL_MODEL": local_model, "ARBOR_WEB_WORKERS": "1",
           "ARBOR_RUN_CONCURRENCY": "64", "ARBOR_RUN_QUEUE": "runs", "ARBOR_LOG_LEVEL": "info"}
    options = ServerOptions()
    options.environ_expansions.update({f"ENV_{k}": v for k, v in env.items()})
    options.realize(["-c", str(ROOT / "config" / "supervisord.conf")])
    return {group.name: group.process_configs[0] for group in options.process_group_configs}


@pytest.mark.parametrize("local_model", ["true", "false"])
def test_the_supervisor_runs_every_process_and_restarts_any_that_dies(tmp_path, local_model):
    from supervisor.datatypes import RestartUnconditionally

    programs = _supervisor_programs(tmp_path, local_model)
    assert set(programs) == {"model", "web", "runs", "worker", "beat", "banner"}
    assert programs["model"].autostart is (local_model == "true")
    for name in ("model", "web", "runs", "worker", "beat"):
        assert programs[name].autorestart is RestartUnconditionally, name
        assert programs[name].startretries >= 10, name
    assert "start_banner --url http://127.0.0.1:8000/ --stay" in programs["banner"].command
    assert programs["runs"].command.endswith("-Q runs -n runs@%h")


def test_every_process_creates_a_missing_var_folder(tmp_path):
    """beat writes its schedule there at start; a missing folder once stopped the whole stack."""
    var = tmp_path / "not" / "made" / "yet"
    env = {**os.environ, "ARBOR_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "config.settings.base"}
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "config", "report"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert var.is_dir()
