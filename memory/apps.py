from django.apps import AppConfig

from audit.log import track_changes


def _settings_of(agent) -> dict:
    """What an agent's audit row records: the settings a run of it sends (so the log says which
    system prompt and parameters were in force from that moment)."""
    return {"name": agent.name, "connection_id": agent.connection_id, "model": agent.model,
            "system_prompt": agent.system_prompt, "params": agent.params, "memory_id": agent.memory_id,
            "memory_window_size": agent.memory_window_size, "context_window": agent.context_window,
            "reserved_output_tokens": agent.reserved_output_tokens, "compaction": agent.compaction,
            "tools": agent.tools, "shared": agent.owner_id is None}


def _pin_of(pin) -> dict:
    return {"run_id": str(pin.run_id), "message_id": pin.message_id}


class MemoryConfig(AppConfig):
    name = "memory"
    verbose_name = "Memory"

    def ready(self) -> None:
        # agent.create / agent.change / agent.delete, each with the agent's settings
        track_changes(self.get_model("Agent"), action_prefix="agent",
                      create=lambda agent: ("create", _settings_of(agent)),
                      change=lambda agent, fields: [("change", _settings_of(agent))],
                      delete=lambda agent: ("delete", {"name": agent.name}))
        # pin.create / pin.delete, with the turn and message pinned
        track_changes(self.get_model("Pin"), action_prefix="pin", change=None,
                      create=lambda pin: ("create", _pin_of(pin)), delete=lambda pin: ("delete", _pin_of(pin)))
