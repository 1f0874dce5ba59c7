from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "memory"
    verbose_name = "Memory"

    def ready(self) -> None:
        from conversations.signals import run_finished

        from .compaction import on_run_finished

        run_finished.connect(on_run_finished, dispatch_uid="memory.compaction.on_run_finished")
