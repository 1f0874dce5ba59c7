"""Turning a service's :class:`core.errors.NotFound` into the site's 404 page (and
:class:`core.errors.Forbidden` into its 403 page).

Pages look objects up through :mod:`conversations.selectors` (and other services) that raise
NotFound; instead of every view re-wrapping it, this middleware answers Django's 404 page for it
(``django.views.defaults.page_not_found``, the same page ``Http404`` gives). The JSON API has its
own handler (``{"detail": ...}``), registered on the django-ninja API. A multipart body it cannot
parse (no boundary) is a 400, and a backing service that is down a 503 page (:mod:`core.error_pages`).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from django.views.defaults import page_not_found, permission_denied

from . import error_pages
from .errors import SERVICE_UNAVAILABLE, Forbidden, NotFound


class NotFoundMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, NotFound):
            return page_not_found(request, Http404(exception.message))
        if isinstance(exception, Forbidden):
            return permission_denied(request, PermissionDenied(exception.message))
        if isinstance(exception, MultiPartParserError):
            return error_pages.bad_request(request, exception)
        if isinstance(exception, SERVICE_UNAVAILABLE):
            return error_pages.unavailable(request)
        return None
