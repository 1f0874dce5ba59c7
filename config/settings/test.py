"""Test settings: the base settings with fast password hashing and a named test database that
worker and server subprocesses can open too (a SQLite file when ``DATABASE_URL`` is not set).

``ARBOR_TEST_DB_NAME`` names the test database (default ``test_arbor``), so several suites can run
side by side on one machine, each with its own ``ARBOR_VAR_DIR`` and Redis database.
"""

from config.env import env

from .base import *  # noqa: F403
from .base import DATABASES, VAR_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

_test_db_name = env("ARBOR_TEST_DB_NAME", default="test_arbor")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"{_test_db_name}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": _test_db_name}

# Run-creation rate limits are off in tests (user ids repeat across tests and counts would leak
# between them); tests/audit turn them on per test with the settings fixture.
ARBOR_RUN_RATE = ""

# Dashboard: the test ASGI server serves static files straight from the finders, so the
# browser tests always get the current app.js/app.css without a collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# Tests' model servers listen on loopback ports of their own: users' connections may reach
# loopback (tests/connections/test_guard.py narrows it per test).
ARBOR_CONNECTION_ALLOWED_NETWORKS = env("ARBOR_CONNECTION_ALLOWED_NETWORKS", default="127.0.0.0/8")

# Background titles add a model request after a session's first answer: off in tests (many read
# the scripted model's request log), on in the tests of the titles (their worker's environment).
ARBOR_CHAT_TITLES = env("ARBOR_CHAT_TITLES", default=False, cast=bool)
