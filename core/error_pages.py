"""The site's last-resort answers (Django's ``handler400/404/500``, set in :mod:`config.urls`):
under ``/api/`` every one is JSON ``{"detail": "..."}`` (an unknown route included); elsewhere an
HTML page. An error that means a backing service is down (:data:`core.errors.SERVICE_UNAVAILABLE`:
PostgreSQL or Redis unreachable, the pool timing out) is a 503 with ``Retry-After`` and a page that
says to wait, never a 500, wherever it was raised (a view, a middleware, a template).

The 503 page renders without a request context (no context processor may touch the database or
Redis while they are down).
"""

from __future__ import annotations

import logging
import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.template import loader
from django.views import defaults

from .errors import SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE

log = logging.getLogger(__name__)
RETRY_AFTER = "5"


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def unavailable(request: HttpRequest) -> HttpResponse:
    """503 while a backing service is down: JSON under ``/api/``, else the ``503.html`` page."""
    if is_api(request):
        response = JsonResponse({"detail": UNAVAILABLE_MESSAGE}, status=503)
    else:
        response = HttpResponse(loader.get_template("503.html").render({"message": UNAVAILABLE_MESSAGE}),
                                status=503)
    response["Retry-After"] = RETRY_AFTER
    return response


def bad_request(request: HttpRequest, exception=None) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": f"Bad request: {exception}" if exception else "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception=None) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": f"No API route {request.method} {request.path_info[:200]}."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """Called by Django inside its ``except`` block: the exception is ``sys.exc_info()``'s."""
    exc = sys.exc_info()[1]
    if isinstance(exc, SERVICE_UNAVAILABLE):
        return unavailable(request)
    if isinstance(exc, MultiPartParserError):  # raised where a middleware reads the form (the CSRF check)
        return bad_request(request, exc)
    if is_api(request):
        return JsonResponse({"detail": "Internal error; it has been logged."}, status=500)
    return defaults.server_error(request)
