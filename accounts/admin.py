"""Admin for API tokens. Tokens are issued with ``manage.py create_api_token`` (the admin cannot
show a token, only its hash), so the admin lists and revokes (deletes) them; both are audited."""

from django.contrib import admin

from audit.admin_mixins import StaffViewAuditMixin

from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(StaffViewAuditMixin, admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created_at", "last_used_at")
    list_select_related = ("user",)
    list_filter = ("created_at", "last_used_at")
    readonly_fields = ("user", "key_hash", "prefix", "created_at", "last_used_at")
    search_fields = ("user__username", "name", "prefix")

    def has_add_permission(self, request):
        return False  # a token made here would have no secret anyone could use

    def audit_owner_id(self, obj):
        return obj.user_id
