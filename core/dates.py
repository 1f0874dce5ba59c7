"""Date filters of pages and the API (``?since=YYYY-MM-DD&until=YYYY-MM-DD``): one parser and one
rule for what a day range covers."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_date

from .errors import InvalidInput

# What the API's schema says a day parameter looks like (JSON Schema ``pattern``, with ``format: date``).
DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
DAY_SCHEMA = {"pattern": DAY_PATTERN, "json_schema_extra": {"format": "date"}}


def parse_day(raw, *, field: str) -> date | None:
    """``raw`` (a string ``YYYY-MM-DD``; None or blank: no date) as a date. Raises InvalidInput
    naming ``field`` for anything else (also an impossible date such as 2024-02-30)."""
    raw = (raw or "").strip() if isinstance(raw, str) or raw is None else raw
    if raw == "":
        return None
    value = None
    if isinstance(raw, str):
        try:
            value = parse_date(raw)
        except ValueError:
            value = None
    if value is None:
        raise InvalidInput(f"{field} must be a date (YYYY-MM-DD)")
    return value


def day_range(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    """``(start, end)`` covering the days ``since`` to ``until``, both included, in the current time
    zone: filter with ``>= start`` and ``< end`` (None: open on that side)."""
    tz = timezone.get_current_timezone()
    start = datetime.combine(since, time.min, tzinfo=tz) if since else None
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=tz) if until else None
    return start, end


def within_days(queryset, since: date | None, until: date | None, *, field: str = "created_at"):
    """``queryset`` narrowed to rows whose ``field`` falls on the days ``since`` to ``until`` (both
    included, see :func:`day_range`; None: open on that side)."""
    start, end = day_range(since, until)
    if start:
        queryset = queryset.filter(**{f"{field}__gte": start})
    if end:
        queryset = queryset.filter(**{f"{field}__lt": end})
    return queryset
