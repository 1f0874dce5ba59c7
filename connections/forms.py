"""Forms of the connections page (and the admin). The API key and the extra headers are write-only:
their inputs start empty and stay empty when the page is shown again; empty means "keep", and a
checkbox removes them."""

from __future__ import annotations

from django import forms

from .models import Connection


class ConnectionForm(forms.Form):
    name = forms.CharField(max_length=100)
    base_url = forms.CharField(max_length=500, label="Base URL", required=False,
                               help_text="The OpenAI-compatible API root, e.g. http://127.0.0.1:8001/v1")
    api_key = forms.CharField(required=False, max_length=4096, label="API key",
                              widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                              help_text="Write-only: stored encrypted, never shown again. Empty keeps the current one.")
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored key")
    extra_headers = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "autocomplete": "off"}),
                                    label="Extra headers (JSON)",
                                    help_text='Write-only, e.g. {"X-Org": "team-a"}. Empty keeps the current ones.')
    clear_extra_headers = forms.BooleanField(required=False, label="Remove the stored headers")
    timeout = forms.FloatField(required=False, min_value=1, max_value=3600, label="Timeout (s)",
                               help_text="Longest silence in a reply; empty: the server's default.")
    enabled = forms.BooleanField(required=False, initial=True)
    shared = forms.BooleanField(required=False, label="Shared with every user (administrators)")
    trusted = forms.BooleanField(required=False, label="Trusted: may reach private and loopback addresses "
                                                       "(administrators)")

    def __init__(self, *args, connection: Connection | None = None, may_share: bool = False, **kwargs):
        if connection is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": connection.name, "base_url": connection.base_url,
                                 "timeout": connection.timeout, "enabled": connection.enabled,
                                 "shared": connection.is_shared, "trusted": connection.trusted}
        super().__init__(*args, **kwargs)
        self.connection = connection
        if not may_share:
            del self.fields["shared"], self.fields["trusted"]
        if connection is None:
            del self.fields["clear_api_key"], self.fields["clear_extra_headers"]
            self.fields["base_url"].required = True
        elif connection.from_environment:
            for name in ("base_url", "api_key", "clear_api_key", "shared", "trusted"):
                self.fields.pop(name, None)

    def changes(self) -> dict:
        """The service's ``changes``: only what this form changes (write-only fields when filled)."""
        data = self.cleaned_data
        out = {k: data[k] for k in ("name", "base_url", "enabled", "shared", "trusted") if k in data}
        timeout = data.get("timeout")
        if self.connection is None:
            out["timeout"] = timeout
        elif timeout != self.connection.timeout:
            out["timeout"] = "" if timeout is None else timeout  # "": back to the server's default
        if data.get("clear_api_key"):
            out["api_key"] = ""
        elif data.get("api_key"):
            out["api_key"] = data["api_key"]
        if data.get("clear_extra_headers"):
            out["extra_headers"] = {}
        elif (data.get("extra_headers") or "").strip():
            out["extra_headers"] = data["extra_headers"]
        return out


class ModelForm(forms.Form):
    """A model added by hand, or a model's context window and prices (empty: the settings' defaults)."""

    name = forms.CharField(max_length=200, label="Model")
    context_window = forms.IntegerField(required=False, min_value=1, label="Context window (tokens)")
    prompt_price = forms.FloatField(required=False, min_value=0, label="Prompt USD / 1M")
    completion_price = forms.FloatField(required=False, min_value=0, label="Completion USD / 1M")

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["name"]

    def values(self) -> dict:
        return {k: self.cleaned_data.get(k) for k in ("context_window", "prompt_price", "completion_price")}
