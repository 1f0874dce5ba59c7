from django.apps import AppConfig


class ComparisonsConfig(AppConfig):
    name = "comparisons"
    verbose_name = "Comparisons"

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - connects the run_finished receiver
