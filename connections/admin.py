"""Admin for model connections. The API key and the extra headers are write-only here too: the form
never renders them, an empty input keeps them, a checkbox removes them. Deleting soft-deletes
(agents and runs that name the connection then fail with its name)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin

from audit.admin_mixins import StaffViewAuditMixin
from core.errors import ArborError

from . import services
from .models import Connection, ConnectionModel
from .selectors import deletable


class ConnectionAdminForm(forms.ModelForm):
    new_api_key = forms.CharField(required=False, label="API key", max_length=services.MAX_SECRET_CHARS,
                                  widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                                  help_text="Write-only; empty keeps the stored key.")
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored key")
    new_extra_headers = forms.CharField(required=False, label="Extra headers (JSON)", widget=forms.Textarea(
        attrs={"rows": 2}), help_text="Write-only; empty keeps the stored headers.")
    clear_extra_headers = forms.BooleanField(required=False, label="Remove the stored headers")

    class Meta:
        model = Connection
        fields = ("owner", "name", "base_url", "timeout", "enabled")

    def _clean_with(self, field: str, cleaner):
        try:
            return cleaner(self.cleaned_data.get(field))
        except ArborError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_new_api_key(self):
        return self._clean_with("new_api_key", services.clean_api_key)

    def clean_new_extra_headers(self):
        return self._clean_with("new_extra_headers", services.clean_headers)

    def clean_base_url(self):
        if self.instance.from_environment:
            return ""
        return self._clean_with("base_url", services.clean_base_url)

    def save(self, commit=True):
        connection = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            connection.api_key = ""
        elif self.cleaned_data.get("new_api_key"):
            connection.api_key = self.cleaned_data["new_api_key"]
        if self.cleaned_data.get("clear_extra_headers"):
            connection.extra_headers = ""
        elif self.cleaned_data.get("new_extra_headers"):
            connection.extra_headers = json.dumps(self.cleaned_data["new_extra_headers"])
        if commit:
            connection.save()
        return connection


class ConnectionModelInline(admin.TabularInline):
    model = ConnectionModel
    extra = 0
    fields = ("name", "listed", "added_by_hand", "listed_context_window", "context_window", "prompt_price",
              "completion_price")
    readonly_fields = ("listed", "listed_context_window")


@admin.register(Connection)
class ConnectionAdmin(StaffViewAuditMixin, admin.ModelAdmin):
    form = ConnectionAdminForm
    inlines = [ConnectionModelInline]
    list_display = ("name", "owner", "shown_url", "enabled", "from_environment", "health", "health_latency_ms",
                    "deleted_at")
    list_select_related = ("owner",)
    list_filter = ("enabled", "health", ("owner", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "base_url")
    raw_id_fields = ("owner",)

    @admin.display(description="Base URL")
    def shown_url(self, obj: Connection) -> str:
        return obj.shown_url

    def has_delete_permission(self, request, obj=None):
        return not (obj is not None and obj.from_environment) and super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        services.connection_delete(connection=obj)

    def delete_queryset(self, request, queryset):
        for connection in deletable(queryset):
            services.connection_delete(connection=connection)
