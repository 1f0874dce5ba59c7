"""Exporting the audit log as CSV (RFC 4180, header row) or JSONL (one JSON object per line),
streamed row by row so an export of millions of rows needs little memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator

from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse
from django.utils import timezone

from .log import record

COLUMNS = ["id", "time", "actor_id", "actor", "action", "target_type", "target_id", "target", "ip", "user_agent",
           "method", "path", "details"]
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


class _Echo:
    def write(self, value):
        return value


def csv_lines(rows: Iterable) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for row in rows:
        data = row.as_dict()
        data["details"] = json.dumps(data["details"], cls=DjangoJSONEncoder, sort_keys=True)
        yield writer.writerow([("" if data[c] is None else data[c]) for c in COLUMNS])


def jsonl_lines(rows: Iterable) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row.as_dict(), cls=DjangoJSONEncoder, sort_keys=True) + "\n"


def export_response(request, queryset, fmt: str) -> StreamingHttpResponse:
    """A streamed download of ``queryset`` (AuditLog rows, oldest first) in ``fmt`` (csv|jsonl).
    The export itself is recorded (``audit.export``)."""
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown export format {fmt!r}")
    queryset = queryset.order_by("created_at", "id")
    record("audit.export", target_type="audit.auditlog", target_id="",
           details={"format": fmt, "query": request.GET.urlencode()[:500]})
    rows = queryset.iterator(chunk_size=2000)
    lines = csv_lines(rows) if fmt == "csv" else jsonl_lines(rows)
    response = StreamingHttpResponse(lines, content_type=CONTENT_TYPES[fmt])
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="arbor-audit-{stamp}.{fmt}"'
    return response
