"""What every router of the JSON API shares: the error schema, the statuses of an operation, the
body parser and bounded pagination (django-ninja). The API itself is assembled in :mod:`config.api`."""

from __future__ import annotations

import json
import types
import typing

from django.http import HttpRequest
from ninja import Field, Schema
from ninja.pagination import PageNumberPagination
from ninja.parser import Parser
from pydantic import BaseModel, Strict

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


_SCALARS = {int, float, bool}


def _members(annotation) -> set:
    """The types a field's annotation admits, ``Optional``/unions unpacked (None left out)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {m for arg in typing.get_args(annotation) for m in _members(arg)}
    return set() if annotation is type(None) else {annotation}


def _nested_models(annotation) -> set:
    found = set()
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            found.add(member)
        for arg in typing.get_args(member):
            found |= _nested_models(arg)
    return found


def _tighten(model: type[BaseModel], done: set) -> None:
    """``model`` and the models in its fields: unknown fields are an error (``extra="forbid"``), and
    numbers and booleans are strict (``false`` is not 0, ``1`` is not ``true``, ``"5"`` is not 5)."""
    if model in done:
        return
    done.add(model)
    for field in model.model_fields.values():
        for inner in _nested_models(field.annotation):
            _tighten(inner, done)
        kinds = _members(field.annotation)
        if kinds and kinds <= _SCALARS and not any(isinstance(m, Strict) for m in field.metadata):
            field.metadata.append(Strict())
    model.model_config["extra"] = "forbid"
    model.model_rebuild(force=True)


def tighten_request_bodies(api) -> int:
    """Apply :func:`_tighten` to every JSON request body of ``api`` (a ``NinjaAPI`` with its routers
    mounted), then rebuild the operations' parameter models. Returns how many schemas it tightened.
    An unknown top-level field is then a 400 naming it (``variants: Extra inputs are not
    permitted``), and the OpenAPI schema says ``additionalProperties: false``."""
    done: set = set()
    wrappers = []
    for _prefix, router in api._routers:
        for path_view in router.path_operations.values():
            for operation in path_view.operations:
                for params in operation.models:
                    if getattr(params, "__ninja_param_source__", None) != "body":
                        continue
                    wrappers.append(params)
                    for field in params.model_fields.values():
                        for body in _nested_models(field.annotation):
                            _tighten(body, done)
    for params in wrappers:
        params.model_rebuild(force=True)
    return len(done)
