from django.apps import AppConfig


class EngineConfig(AppConfig):
    """The run engine: no models; registered so Celery's autodiscovery finds :mod:`engine.tasks`.

    At start-up it lends :mod:`memory` (which sits below the engine) the one context builder, so the
    chat settings preview and Undo compaction count the real next context."""

    name = "engine"
    verbose_name = "Run engine"

    def ready(self) -> None:
        # imported here: the models these modules read are loaded only once the apps are ready
        from memory.selectors import register_next_context

        from .context import next_context  # imported here for the same reason (it reads the models)

        register_next_context(next_context)
