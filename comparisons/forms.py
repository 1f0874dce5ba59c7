"""Forms of the start page: the comparison (input, mode, blind, tags) and one form per variant.
The JSON API validates each variant it is given with the same :class:`VariantForm` (:func:`variant_spec`)."""

from __future__ import annotations

from django import forms

from connections.models import Connection
from connections.selectors import visible_connections
from core.errors import InvalidInput, NotFound
from memory.models import DEFAULT_MEMORY_ID, Agent

from .models import MAX_VARIANTS, Mode
from .services import VariantSpec


class ComparisonForm(forms.Form):
    mode = forms.ChoiceField(choices=Mode.choices, initial=Mode.NEW_PROMPT, widget=forms.RadioSelect)
    prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    source_run = forms.ChoiceField(required=False, label="Branch to replay")
    blind = forms.BooleanField(required=False, initial=True, label="Blind: hide which variant is which until I vote")
    tags = forms.CharField(required=False, max_length=500, help_text="Comma-separated.")
    samples = forms.IntegerField(required=False, min_value=1, max_value=10, initial=1,
                                 label="Answers per variant and prompt",
                                 help_text="More than 1: repeats (seed + 1, + 2, …) show how much answers vary.")

    def __init__(self, *args, source_choices: list[tuple[str, str]] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source_run"].choices = [("", "—")] + list(source_choices)

    def clean(self):
        data = super().clean()
        if data.get("mode") == Mode.NEW_PROMPT and not (data.get("prompt") or "").strip():
            self.add_error("prompt", "Write the prompt every variant answers.")
        if data.get("mode") == Mode.REPLAY and not data.get("source_run"):
            self.add_error("source_run", "Choose the branch whose user turns are replayed.")
        return data


def form_connections(user):
    """The connections a variant may name: the user's and shared ones (the environment's default
    connection is "no connection")."""
    return visible_connections(user).filter(from_environment=False)


class VariantForm(forms.Form):
    """One variant: an existing agent, or a configuration from which a new agent is made.

    A form whose label is empty is unused (variants 3 and 4 are optional).
    """

    label = forms.CharField(required=False, max_length=100)
    agent = forms.ModelChoiceField(queryset=Agent.objects.none(), required=False, empty_label="— configure below —")
    connection = forms.ModelChoiceField(queryset=Connection.objects.none(), required=False, empty_label="Default",
                                        help_text="The endpoint this variant runs on.")
    model = forms.CharField(required=False, max_length=200)
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    temperature = forms.FloatField(required=False, min_value=0, max_value=2)
    top_p = forms.FloatField(required=False, min_value=0, max_value=1)
    max_tokens = forms.IntegerField(required=False, min_value=1, max_value=131_072)
    seed = forms.IntegerField(required=False)
    memory_id = forms.CharField(required=False, max_length=100, initial=DEFAULT_MEMORY_ID)
    memory_window_size = forms.IntegerField(required=False, min_value=0, label="Memory window (messages)")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].widget.attrs["list"] = "known-models"
        if user is not None:
            self.fields["agent"].queryset = Agent.objects.pickable_by(user)
            self.fields["connection"].queryset = form_connections(user)

    @property
    def used(self) -> bool:
        return bool(self.is_valid() and (self.cleaned_data.get("label") or "").strip())

    def spec(self) -> VariantSpec:
        data = self.cleaned_data
        params = {k: data[k] for k in ("temperature", "top_p", "max_tokens", "seed") if data.get(k) is not None}
        return VariantSpec(
            label=data["label"].strip(),
            model=data.get("model") or "",
            system_prompt=data.get("system_prompt") or "",
            params=params,
            memory_id=data.get("memory_id") or DEFAULT_MEMORY_ID,
            memory_window_size=data.get("memory_window_size"),
            agent=data.get("agent"),
            connection=data.get("connection"),
        )


def variant_forms(data=None, *, user, initial_model: str = "") -> list[VariantForm]:
    forms_ = []
    for i in range(MAX_VARIANTS):
        initial = {"memory_id": DEFAULT_MEMORY_ID}
        if i < 2 and initial_model:
            initial["model"] = initial_model
        forms_.append(VariantForm(data, prefix=f"v{i}", user=user, initial=initial))
    return forms_


CONFIG_FIELDS = ("model", "system_prompt", "params", "memory_id", "memory_window_size", "connection_id")


def variant_spec(data: dict, *, user, where: str = "variant") -> VariantSpec:
    """The :class:`VariantSpec` of one variant given as data (the JSON API's ``{"label", "agent_id"}``
    or ``{"label", "model", "system_prompt", "params", "memory_id", "memory_window_size"}``),
    validated by :class:`VariantForm` as on the start page; ``params`` go on to
    :func:`core.params.clean_params` in :func:`comparisons.services.comparison_start`.

    Raises NotFound for an agent the user may not pick (another user's, or one made by a
    comparison) and InvalidInput naming ``where`` and the field: a form error, or an agent given
    together with configuration fields (an agent is taken as it is).
    """
    agent_id = data.get("agent_id")
    if agent_id is not None:
        mixed = [name for name in CONFIG_FIELDS if data.get(name) not in (None, "", {})]
        if mixed:
            raise InvalidInput(f"{where}: give agent_id or a configuration ({', '.join(mixed)}), not both")
        if not Agent.objects.pickable_by(user).filter(pk=agent_id).exists():
            raise NotFound(f"{where}: no agent with id {agent_id}.")
    fields = {name: data.get(name) for name in ("label", "model", "system_prompt", "memory_id", "memory_window_size")}
    connection_id = data.get("connection_id")
    if connection_id is not None and not form_connections(user).filter(pk=connection_id).exists():
        raise NotFound(f"{where}: no connection with id {connection_id}.")
    form = VariantForm({**fields, "agent": agent_id, "connection": connection_id}, user=user)
    if not form.is_valid():
        api_names = {"agent": "agent_id", "connection": "connection_id"}
        raise InvalidInput("; ".join(f"{where}.{api_names.get(name, name)}: {' '.join(errors)}"
                                     for name, errors in form.errors.items()))
    spec = form.spec()
    spec.params = data.get("params") or {}
    return spec
