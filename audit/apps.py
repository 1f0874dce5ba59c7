from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from . import receivers  # imports django.contrib models: only once the app registry is ready

        receivers.connect()
