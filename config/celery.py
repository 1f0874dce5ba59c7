"""The Celery application. Workers: ``celery -A config worker``; periodic jobs: ``celery -A config beat``."""

import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from core.queue import TASK_MODULES
from core.redact import ScrubCredentials

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

from config import kombu_redis

# kombu 5.7.0's Redis channels crash the worker when Redis goes away with unacknowledged messages.
kombu_redis.install()

app = Celery("arbor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = sorted(set(TASK_MODULES.values()))  # the one table of task names and their modules


@after_setup_logger.connect
@after_setup_task_logger.connect
def _scrub_worker_logs(logger, **kwargs):
    """Celery replaces the root logger's handlers: give its handlers the credential scrubber too."""
    for handler in logger.handlers:
        handler.addFilter(ScrubCredentials())
