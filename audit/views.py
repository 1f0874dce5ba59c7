"""The audit log export for staff (a run's audit page is :mod:`runaudit.views`).

Only active staff with ``audit.view_auditlog`` (superusers, the auditor group) may use it; anyone
else gets 404, as for pages that do not exist.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.http import require_GET

from .access import require_staff_perm
from .export import CONTENT_TYPES, export_response
from .models import AuditLog


@require_GET
def log_export(request: HttpRequest) -> HttpResponse:
    """The audit log as CSV or JSONL (``?format=csv|jsonl``), filtered like the admin's list
    (same query parameters: ``action__exact``, ``actor__id__exact``, ``created_at__gte``, ``q``...)."""
    require_staff_perm(request, "audit.view_auditlog")
    fmt = request.GET.get("format", "csv")
    if fmt not in CONTENT_TYPES:
        return HttpResponseBadRequest("format must be csv or jsonl")
    model_admin = admin.site._registry[AuditLog]
    filters = request.GET.copy()
    filters.pop("format", None)
    original = request.GET
    request.GET = filters
    try:
        changelist = model_admin.get_changelist_instance(request)
        queryset = changelist.get_queryset(request)
    except Exception as exc:  # IncorrectLookupParameters and bad dates alike
        return HttpResponseBadRequest(f"Invalid filter: {exc}")
    finally:
        request.GET = original
    return export_response(request, queryset, fmt)
