"""The JSON API (django-ninja): one :class:`ninja.NinjaAPI` with each app's router mounted, OpenAPI
schema at ``/api/openapi.json``.

Authentication: the browser session (with CSRF on unsafe methods) or ``Authorization: Bearer
<token>`` (``manage.py create_api_token``); neither: 401. Errors are JSON ``{"detail": "..."}``
everywhere (the handlers below), and each operation's ``response=`` lists every status it answers
(:func:`core.api_kit.answers`).
"""

from __future__ import annotations

import functools
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import JsonResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from accounts.api_auth import BearerToken, SessionCookie
from accounts.middleware import bearer_user
from archive.api import router as archive_router
from branches.api import router as branches_router
from comparisons.api import router as comparisons_router
from connections.api import router as connections_router
from conversations.api import router as conversations_router
from core.api_kit import JsonObjectParser, tighten_request_bodies
from core.dates import DAY_PATTERN
from core.errors import SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE, ArborError
from memory.api import router as agents_router
from merges.api import router as merges_router
from search.api import router as search_router

log = logging.getLogger(__name__)

def signed_in_only(view):
    """The schema and docs views (``docs_decorator``): a login session or a Bearer token, else 401 JSON."""

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        if not request.user.is_authenticated and bearer_user(request) is None:
            return JsonResponse({"detail": "Authentication required: log in or send a Bearer token."}, status=401)
        return view(request, *args, **kwargs)

    return guarded


api = NinjaAPI(
    title="Arbor API",
    version="1",
    description="Branching LLM conversations: sessions, runs (turns) and their tree; agents and the model "
                "connections they run on; A/B comparisons; memory search; archive import and export. Every "
                "error is JSON `{\"detail\": \"...\"}`.",
    auth=[BearerToken(), SessionCookie()],
    parser=JsonObjectParser(),
    urls_namespace="api",
    docs_decorator=signed_in_only,
)


@api.exception_handler(ArborError)
def _arbor_error(request, exc: ArborError):
    return api.create_response(request, {"detail": exc.message}, status=exc.status)


@api.exception_handler(Exception)
def _unexpected_error(request, exc: Exception):
    """Every other failure is JSON too: 503 while a backing service is down, else 500."""
    if isinstance(exc, SERVICE_UNAVAILABLE):
        log.warning("API %s %s: service unavailable: %s", request.method, request.path, exc)
        response = api.create_response(request, {"detail": UNAVAILABLE_MESSAGE}, status=503)
        response["Retry-After"] = "5"
        return response
    log.exception("API %s %s failed", request.method, request.path)
    return api.create_response(request, {"detail": "Internal error; it has been logged."}, status=500)


# What a schema ``pattern`` means, said in words (pydantic's message quotes the regular expression).
PATTERN_MEANINGS = {DAY_PATTERN: "must be a date (YYYY-MM-DD)"}


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    parts = []
    for error in exc.errors:
        where = ".".join(str(p) for p in error.get("loc", []) if p not in ("body", "payload"))
        message = PATTERN_MEANINGS.get((error.get("ctx") or {}).get("pattern"), error.get("msg"))
        parts.append(f"{where}: {message}" if where else str(message))
    body = {"detail": "; ".join(parts) or "invalid request", "errors": exc.errors}
    return api.create_response(request, body, status=400)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    detail = str(exc)
    if exc.status_code == 400 and exc.__cause__ is not None:  # the body parser's reason (ninja shows it in DEBUG only)
        detail = f"{detail}: {exc.__cause__}"
    return api.create_response(request, {"detail": detail}, status=exc.status_code)


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = {"detail": f"The request body is larger than {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE)."}
    return api.create_response(request, body, status=413)


@api.exception_handler(SuspiciousOperation)
def _suspicious(request, exc):
    return api.create_response(request, {"detail": f"Bad request: {exc}"}, status=400)


@api.exception_handler(MultiPartParserError)
def _bad_multipart(request, exc):
    return api.create_response(request, {"detail": f"Bad multipart body: {exc}"}, status=400)


@api.exception_handler(AuthenticationError)
def _auth_error(request, exc):
    body = {"detail": "Authentication required: log in or send a Bearer token."}
    return api.create_response(request, body, status=401)


api.add_router("", conversations_router)
api.add_router("", branches_router)
api.add_router("", merges_router)
api.add_router("", comparisons_router)
api.add_router("", search_router)
api.add_router("", archive_router)
api.add_router("", connections_router)
api.add_router("", agents_router)

# Unknown top-level fields are a 400 naming them; numbers and booleans are strict (core.api_kit).
tighten_request_bodies(api)
