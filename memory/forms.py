"""The form of the Agents page: every field of an agent, turned into the service's ``data``
(:func:`memory.services.agent_create` / :func:`~memory.services.agent_update`), which validates with
:meth:`memory.models.Agent.clean` — parameters through :func:`core.params.clean_params`, the
compaction policy through :func:`memory.policy.parse_policy`. The form only parses text (JSON,
comma-separated tools); it judges nothing the model does not.
"""

from __future__ import annotations

import json

from django import forms

from connections.models import Connection

from .models import DEFAULT_MEMORY_ID, Agent


def _json_object(text: str, label: str) -> dict:
    text = (text or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise forms.ValidationError(f"{label} is not valid JSON: {exc.msg} ({where}).") from None
    if not isinstance(value, dict):
        raise forms.ValidationError(f"{label} must be a JSON object, e.g. {{\"temperature\": 0.2}}.")
    return value


class AgentForm(forms.Form):
    name = forms.CharField(max_length=100)
    connection = forms.ModelChoiceField(queryset=Connection.objects.none(), required=False,
                                        empty_label="Default connection")
    model = forms.CharField(max_length=200, required=False,
                            help_text="One of the connection's models; empty: the default model.")
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 5}))
    params = forms.CharField(required=False, label="Parameters (JSON)",
                             widget=forms.Textarea(attrs={"rows": 2}),
                             help_text='e.g. {"temperature": 0.2, "max_tokens": 400}')
    memory_id = forms.CharField(max_length=100, initial=DEFAULT_MEMORY_ID, label="Memory id",
                                help_text="Agents with the same memory id share history on a branch.")
    memory_window_size = forms.IntegerField(required=False, min_value=0, label="Memory window (messages)",
                                            help_text="Newest N messages kept; 0 keeps none; empty keeps all.")
    context_window = forms.IntegerField(required=False, min_value=1, label="Context budget (tokens)",
                                        help_text="Empty: the model's configured window.")
    reserved_output_tokens = forms.IntegerField(min_value=0, initial=512, label="Reserved output tokens")
    compaction = forms.CharField(required=False, label="Compaction strategies (JSON)",
                                 widget=forms.Textarea(attrs={"rows": 4}),
                                 help_text='e.g. {"threshold": 0.8, "strategies": [{"type": "tool_results", "action": '
                                           '"drop", "max_chars": 0}, {"type": "keep_last_turns", "turns": 10}, '
                                           '{"type": "summarize", "keep_recent_turns": 4}]}; empty: the defaults.')
    tools = forms.CharField(required=False, max_length=2000, help_text="Tool names, separated by commas.")

    def __init__(self, *args, user, agent: Agent | None = None, **kwargs):
        if agent is not None and "initial" not in kwargs:
            kwargs["initial"] = initial_of(agent)
        super().__init__(*args, **kwargs)
        self.fields["connection"].queryset = Connection.objects.visible_to(user)

    def clean_params(self) -> dict:
        return _json_object(self.cleaned_data.get("params"), "Parameters")

    def clean_compaction(self) -> dict:
        return _json_object(self.cleaned_data.get("compaction"), "Compaction")

    def clean_tools(self) -> list[str]:
        return [t.strip() for t in (self.cleaned_data.get("tools") or "").split(",") if t.strip()]

    def data_for_service(self) -> dict:
        """The service's ``data`` (the API's field names)."""
        data = dict(self.cleaned_data)
        connection = data.pop("connection")
        data["connection_id"] = connection.pk if connection is not None else None
        return data


def initial_of(agent: Agent) -> dict:
    """The form's initial values for ``agent`` (JSON fields pretty-printed)."""
    return {
        "name": agent.name, "connection": agent.connection_id, "model": agent.model,
        "system_prompt": agent.system_prompt, "params": json.dumps(agent.params) if agent.params else "",
        "memory_id": agent.memory_id, "memory_window_size": agent.memory_window_size,
        "context_window": agent.context_window, "reserved_output_tokens": agent.reserved_output_tokens,
        "compaction": json.dumps(agent.compaction, indent=1) if agent.compaction else "",
        "tools": ", ".join(agent.tools or []),
    }


class SettingsForm(forms.Form):
    """The chat settings panel: the agent, a system prompt override, parameters and compaction."""

    agent = forms.ModelChoiceField(queryset=Agent.objects.none(), required=False, empty_label="The composer's choice")
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}),
                                    label="System prompt override", help_text="Empty: the agent's system prompt.")
    params = forms.CharField(required=False, label="Parameters (JSON)", widget=forms.Textarea(attrs={"rows": 2}),
                             help_text='e.g. {"temperature": 0.2}')
    compaction = forms.CharField(required=False, label="Compaction strategies (JSON)",
                                 widget=forms.Textarea(attrs={"rows": 4}),
                                 help_text='Strategies run in order, e.g. {"enabled": true, "threshold": 0.7, '
                                           '"strategies": [{"type": "tool_results", "action": "drop", "max_chars": '
                                           '0}, {"type": "keep_last_turns", "turns": 20}, {"type": "summarize", '
                                           '"keep_recent_turns": 4}]}; {"enabled": false} turns compaction off; '
                                           'empty: the agent\'s.')

    def __init__(self, *args, user, saved=None, **kwargs):
        if saved is not None and "initial" not in kwargs:
            kwargs["initial"] = {"agent": saved.agent_id, "system_prompt": saved.system_prompt,
                                 "params": json.dumps(saved.params) if saved.params else "",
                                 "compaction": json.dumps(saved.compaction, indent=1) if saved.compaction else ""}
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.pickable_by(user)

    def clean_params(self) -> dict:
        return _json_object(self.cleaned_data.get("params"), "Parameters")

    def clean_compaction(self) -> dict:
        return _json_object(self.cleaned_data.get("compaction"), "Compaction")

    def data_for_service(self) -> dict:
        data = dict(self.cleaned_data)
        agent = data.pop("agent")
        return {**data, "agent_id": agent.pk if agent is not None else None}
