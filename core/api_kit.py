"""What every router of the JSON API shares: the error schema, the statuses of an operation, the
body parser and bounded pagination (django-ninja). The API itself is assembled in :mod:`config.api`."""

from __future__ import annotations

import json

from django.http import HttpRequest
from ninja import Field, Schema
from ninja.pagination import PageNumberPagination
from ninja.parser import Parser

from .errors import NotFound


class JsonObjectParser(Parser):
    """Request bodies are JSON objects: a list, a number or a string (``[null, null]``, ``5``) is
    refused, and so is a lone surrogate (``"\\ud800"``), which no column can store. django-ninja
    answers 400 "Cannot parse request body" (our handler adds the reason). ``NaN``/``Infinity`` are
    refused by the field they are in (``core.params.clean_params`` names it; other fields' types)."""

    def parse_body(self, request: HttpRequest) -> dict:
        data = json.loads(request.body)
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError for a lone surrogate
        return data


class Detail(Schema):
    """Every error answer: ``{"detail": "..."}`` (a 400 for a malformed field adds ``errors``)."""

    detail: str


def answers(ok: dict, *errors: int) -> dict:
    """django-ninja's ``response=`` of an operation: ``ok`` (success status → schema) plus the
    :class:`Detail` schema for 401 and 503 (any operation: no credentials; a backing service down)
    and for each status in ``errors`` (400, 404, 409, 413, 429, ...)."""
    return {**ok, **dict.fromkeys(sorted({401, 503, *errors}), Detail)}


BODY = (400, 413)  # an operation with a JSON body: malformed or not an object (400), too large (413)

MAX_PAGE_SIZE = 100


class Pages(PageNumberPagination):
    """Page numbers, bounded: ``page`` 1–2^31 and ``page_size`` 1–MAX_PAGE_SIZE (else 400, naming
    the field); a page past the last one is 404 (page 1 of an empty list is an empty page)."""

    class Input(Schema):
        page: int = Field(1, ge=1, le=2**31)
        page_size: int | None = Field(None, ge=1, le=MAX_PAGE_SIZE)

    def paginate_queryset(self, queryset, pagination: Input, request: HttpRequest, **params) -> dict:
        size = self._get_page_size(pagination.page_size)
        count = self._items_count(queryset)
        offset = (pagination.page - 1) * size
        if offset and offset >= count:
            last = max(1, -(-count // size))
            raise NotFound(f"No page {pagination.page}: there {'is' if last == 1 else 'are'} {last} "
                           f"page{'' if last == 1 else 's'} of {size}.")
        return {self.items_attribute: queryset[offset:offset + size], "count": count}
