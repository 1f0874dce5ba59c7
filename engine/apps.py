from django.apps import AppConfig


class EngineConfig(AppConfig):
    """The run engine: no models; registered so Celery's autodiscovery finds :mod:`engine.tasks`."""

    name = "engine"
    verbose_name = "Run engine"
