from django.apps import AppConfig

from audit.log import track_changes


class MemoryConfig(AppConfig):
    name = "memory"
    verbose_name = "Memory"

    def ready(self) -> None:
        # agent.create / agent.change / agent.delete
        track_changes(self.get_model("Agent"), action_prefix="agent")
