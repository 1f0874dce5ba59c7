"""The Celery application. Workers: ``celery -A config worker``; periodic jobs: ``celery -A config beat``."""

import os

from celery import Celery

from core.queue import TASK_MODULES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("arbor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = sorted(set(TASK_MODULES.values()))  # the one table of task names and their modules
