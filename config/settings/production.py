"""Production settings: ``DJANGO_SETTINGS_MODULE=config.settings.production``.

Everything the embedded defaults guess must be given here, or start-up fails with
ImproperlyConfigured naming the missing variable:

- ``DJANGO_SECRET_KEY`` (50+ random characters), ``DJANGO_ALLOWED_HOSTS`` (comma-separated);
- ``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL`` (Redis; also the cache and run streams).

HTTPS is assumed, terminated by a reverse proxy that sets ``X-Forwarded-Proto``: secure cookies,
HSTS (``DJANGO_HSTS_SECONDS``, default one year, with subdomains and preload), SSL redirect.
``python manage.py check --deploy`` reports nothing under these settings.
"""

from django.core.exceptions import ImproperlyConfigured

from config.env import env, env_list

from .base import *  # noqa: F403
from .base import DATABASES

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 random characters.")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS") or env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("Set the DJANGO_ALLOWED_HOSTS environment variable (comma-separated host names).")
# Origins allowed to POST (scheme included), e.g. https://arbor.example.com; default: https:// + each host.
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS") or [
    f"https://{host.lstrip('.')}" for host in ALLOWED_HOSTS if host != "*"
]

# Required services: the embedded SQLite and filesystem broker are for one machine only.
env("DATABASE_URL")
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL in production (postgres://...).")
if not env("CELERY_BROKER_URL").startswith(("redis://", "rediss://")):
    raise ImproperlyConfigured("CELERY_BROKER_URL must be a Redis URL (redis:// or rediss://) in production.")
if "pool" not in DATABASES["default"].get("OPTIONS", {}):  # ARBOR_DB_POOL_SIZE=0: persistent connections instead
    DATABASES["default"]["CONN_MAX_AGE"] = env("DATABASE_CONN_MAX_AGE", default=60, cast=int)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# HTTPS behind a proxy: trust its X-Forwarded-Proto (the proxy must set it and strip clients' own).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env("DJANGO_SECURE_SSL_REDIRECT", default=True, cast=bool)
SECURE_HSTS_SECONDS = env("DJANGO_HSTS_SECONDS", default=31_536_000, cast=int)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"

# Static files: collected by `manage.py collectstatic`, served compressed by WhiteNoise.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
