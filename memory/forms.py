"""The form of the Agents page: every field of an agent, turned into the service's ``data``
(:func:`memory.services.agent_create` / :func:`~memory.services.agent_update`), which validates with
:meth:`memory.models.Agent.clean` — parameters through :func:`core.params.clean_params`, the
compaction policy through :func:`memory.policy.parse_policy`. The form only parses text (JSON,
comma-separated tools); it judges nothing the model does not.
"""

from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError

from connections.models import Connection

from .models import DEFAULT_MEMORY_ID, Agent
from .policy import parse_policy


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


# The strategy editor of the chat settings panel: one row per strategy type, each used or not, at
# a place in the order, with its parameters (memory.policy.parse_policy validates the result).
STRATEGY_ROWS = (
    ("tool_results", "Shorten or drop tool results",
     "Tool results longer than the limit are cut to it (or dropped); the call and its results stay together."),
    ("keep_last_turns", "Keep the last N turns",
     "Older turns are left out; a tool call is never separated from its results."),
    ("summarize", "Summarise older turns",
     "The model writes a summary of the older turns; the most recent ones are kept word for word."),
)
STRATEGY_PARAMS = {  # type -> (field suffix, form field) of its parameters
    "tool_results": (("action", lambda: forms.ChoiceField(choices=[("truncate", "Shorten"), ("drop", "Drop")],
                                                          label="Action")),
                     ("max_chars", lambda: forms.IntegerField(min_value=0, initial=4000,
                                                              label="Keep at most (characters)"))),
    "keep_last_turns": (("turns", lambda: forms.IntegerField(min_value=0, initial=10, label="Turns kept")),),
    "summarize": (("keep_recent_turns", lambda: forms.IntegerField(min_value=0, initial=4,
                                                                   label="Recent turns kept word for word")),
                  ("max_tokens", lambda: forms.IntegerField(min_value=16, initial=256,
                                                            label="Summary length (tokens)"))),
}
COMPACTION_MODES = [("agent", "The agent's policy"), ("custom", "These strategies, in order"),
                    ("off", "No compaction on this branch")]


class SettingsForm(forms.Form):
    """The chat settings panel: the agent, a system prompt override, parameters and the compaction
    strategy editor (the agent's policy, none, or the strategies ticked, in the order given, from a
    threshold of the usable window down to a target)."""

    agent = forms.ModelChoiceField(queryset=Agent.objects.none(), required=False, empty_label="The composer's choice")
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}),
                                    label="System prompt override", help_text="Empty: the agent's system prompt.")
    params = forms.CharField(required=False, label="Parameters (JSON)", widget=forms.Textarea(attrs={"rows": 2}),
                             help_text='e.g. {"temperature": 0.2}')
    compaction_mode = forms.ChoiceField(choices=COMPACTION_MODES, initial="agent", widget=forms.RadioSelect,
                                        label="Compaction", required=False)
    threshold = forms.IntegerField(min_value=1, max_value=100, initial=80, required=False,
                                   label="Compact when the context reaches (% of the usable window)")
    target = forms.IntegerField(min_value=0, max_value=100, initial=40, required=False,
                                label="… down to (% of the usable window)")

    GENERAL = ("agent", "system_prompt", "params")

    def __init__(self, *args, user, saved=None, **kwargs):
        if saved is not None and "initial" not in kwargs:
            kwargs["initial"] = {"agent": saved.agent_id, "system_prompt": saved.system_prompt,
                                 "params": json.dumps(saved.params) if saved.params else "",
                                 **policy_initial(saved.compaction)}
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.pickable_by(user)
        self.kept = {s.get("type"): s for s in ((saved.compaction or {}).get("strategies") or [])} if saved else {}
        for position, (kind, title, _) in enumerate(STRATEGY_ROWS, start=1):
            self.fields[f"{kind}_use"] = forms.BooleanField(required=False, label=f"Use “{title}”")
            self.fields[f"{kind}_order"] = forms.IntegerField(min_value=1, max_value=len(STRATEGY_ROWS),
                                                              initial=position, label="Order", required=False)
            for suffix, make in STRATEGY_PARAMS[kind]:
                self.fields[f"{kind}_{suffix}"] = make()
                self.fields[f"{kind}_{suffix}"].required = False  # an unused row's; empty: the default

    def general_fields(self) -> list:
        return [self[name] for name in self.GENERAL]

    def strategy_rows(self) -> list[dict]:
        """The editor's rows: ``{"type", "title", "help", "use", "order", "params": [bound fields]}``."""
        return [{"type": kind, "title": title, "help": help_text, "use": self[f"{kind}_use"],
                 "order": self[f"{kind}_order"], "params": [self[f"{kind}_{s}"] for s, _ in STRATEGY_PARAMS[kind]]}
                for kind, title, help_text in STRATEGY_ROWS]

    def clean_params(self) -> dict:
        return _json_object(self.cleaned_data.get("params"), "Parameters")

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            data["compaction"] = self._policy(data)
        except forms.ValidationError as exc:
            self.add_error(None, exc)
        return data

    def _policy(self, data: dict) -> dict:
        """The compaction policy the editor describes (``{}``: the agent's; ``{"enabled": False}``: none)."""
        mode = data.get("compaction_mode") or "agent"
        if mode == "agent":
            return {}
        if mode == "off":
            return {"enabled": False}
        used = sorted((self._value(data, f"{kind}_order"), index, kind)
                      for index, (kind, _, _) in enumerate(STRATEGY_ROWS) if data.get(f"{kind}_use"))
        if not used:
            raise forms.ValidationError("Tick at least one strategy (or choose the agent's policy, or none).")
        threshold, target = self._value(data, "threshold"), self._value(data, "target")
        if target > threshold:
            raise forms.ValidationError("Compaction: the target must not be above the threshold.")
        strategies = []
        for _, _, kind in used:
            params = {suffix: self._value(data, f"{kind}_{suffix}") for suffix, _ in STRATEGY_PARAMS[kind]}
            strategies.append({**self.kept.get(kind, {}), "type": kind, **params})  # a summary prompt etc. stay
        policy = {"enabled": True, "threshold": threshold / 100, "target": target / 100, "strategies": strategies}
        try:
            parse_policy(policy)
        except ValidationError as exc:
            raise forms.ValidationError(f"Compaction: {'; '.join(exc.messages)}") from None
        return policy

    def _value(self, data: dict, name: str):
        """The cleaned value of field ``name``, or its initial value when left empty."""
        value = data.get(name)
        return self.fields[name].initial if value in (None, "") else value

    def data_for_service(self) -> dict:
        data = {k: self.cleaned_data[k] for k in ("system_prompt", "params", "compaction")}
        agent = self.cleaned_data["agent"]
        return {**data, "agent_id": agent.pk if agent is not None else None}


def policy_initial(compaction: dict | None) -> dict:
    """The editor's initial values for a saved compaction policy (``{}``: the agent's)."""
    compaction = compaction or {}
    if not compaction:
        return {"compaction_mode": "agent"}
    if compaction.get("enabled") is False:
        return {"compaction_mode": "off"}
    initial = {"compaction_mode": "custom"}
    if "threshold" in compaction:
        initial["threshold"] = round(compaction["threshold"] * 100)
    if "target" in compaction:
        initial["target"] = round(compaction["target"] * 100)
    for order, strategy in enumerate(compaction.get("strategies") or [], start=1):
        kind = strategy.get("type")
        if kind in STRATEGY_PARAMS:
            initial.update({f"{kind}_use": True, f"{kind}_order": order})
            initial.update({f"{kind}_{suffix}": strategy[suffix] for suffix, _ in STRATEGY_PARAMS[kind]
                            if suffix in strategy})
    return initial
