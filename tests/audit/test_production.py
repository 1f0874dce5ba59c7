"""The production settings profile: required variables, and `check --deploy` finds nothing."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

REQUIRED = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
    "DJANGO_ALLOWED_HOSTS": "arbor.example.com",
    "DATABASE_URL": "postgres://arbor@127.0.0.1:5432/arbor",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/5",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "ARBOR_VAR_DIR": "/tmp/arbor-audit"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_reports_nothing():
    """`manage.py check --deploy` under config.settings.production: no issue at all."""
    result = manage("check", "--deploy", **REQUIRED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced).", result.stdout + result.stderr
    assert not result.stderr.strip()


def test_each_required_variable_missing_is_improperly_configured():
    """Without any one of the required variables, start-up fails naming it."""
    for name in REQUIRED:
        env = {k: v for k, v in REQUIRED.items() if k != name}
        result = manage("check", **env)
        assert result.returncode != 0, name
        assert "ImproperlyConfigured" in result.stderr and name in result.stderr, (name, result.stderr[-500:])


def test_embedded_services_and_weak_keys_are_refused():
    """SQLite, the filesystem broker and a short secret key are refused in production."""
    for override, text in [({"DATABASE_URL": "sqlite:////tmp/x.sqlite3"}, "PostgreSQL"),
                           ({"CELERY_BROKER_URL": "filesystem://"}, "Redis"),
                           ({"DJANGO_SECRET_KEY": "short"}, "50 random characters")]:
        result = manage("check", **{**REQUIRED, **override})
        assert result.returncode != 0 and text in result.stderr, (override, result.stderr[-500:])


def test_security_settings_are_on():
    """Secure cookies, HSTS, SSL redirect and the proxy header are set."""
    code = ("import django;django.setup();from django.conf import settings as s;"
            "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS,"
            " s.SECURE_PROXY_SSL_HEADER, s.DEBUG, s.CSRF_TRUSTED_ORIGINS)")
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings.production",
           "ARBOR_VAR_DIR": "/tmp/arbor-audit", **REQUIRED}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ("True True True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https') False "
                   "['https://arbor.example.com']")
