"""Celery task names: the table in core.queue is the one place that names them, each name is
``<package>.<function>`` of the module that defines it, and the beat schedule uses those names."""

from __future__ import annotations

import pytest
from django.conf import settings

from config.celery import app
from core.queue import FORMER_NAMES, TASK_MODULES


@pytest.fixture(autouse=True)
def _model_endpoint():
    """Overrides tests/conftest.py's autouse fixture: these checks need no model server."""


def _registered() -> dict:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def _function(task):
    return getattr(task.run, "__func__", task.run)  # a bound task's run is a method


def test_every_task_is_in_the_table_under_its_module_and_function_name():
    registered = _registered()
    assert set(registered) == set(TASK_MODULES) | set(FORMER_NAMES)
    for name, module in TASK_MODULES.items():
        task = registered[name]
        assert task.run.__module__ == module, name
        assert name == f"{module.split('.')[0]}.{task.run.__name__}", name


def test_a_former_name_runs_the_same_function_with_the_same_options():
    registered = _registered()
    for former, current in FORMER_NAMES.items():
        old, new = registered[former], registered[current]
        assert _function(old).__code__ is _function(new).__code__  # Celery copies the function per task
        for option in ("acks_late", "reject_on_worker_lost", "max_retries", "soft_time_limit", "time_limit",
                       "autoretry_for", "ignore_result"):
            assert getattr(old, option, None) == getattr(new, option, None), (former, option)


def test_the_beat_schedule_names_tasks_of_the_table():
    names = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert names and names <= set(TASK_MODULES)


def test_every_task_has_the_reliability_options_of_core_queue_task():
    """No task is defined past ``core.queue.task``: each is acknowledged after it ran and requeued
    when its worker dies."""
    for name, task in _registered().items():
        assert (task.acks_late, task.reject_on_worker_lost) == (True, True), name
