"""Turning a service's :class:`core.errors.NotFound` into the site's 404 page (and
:class:`core.errors.Forbidden` into its 403 page).

Pages look objects up through :mod:`conversations.selectors` (and other services) that raise
NotFound; instead of every view re-wrapping it, this middleware answers Django's 404 page for it
(``django.views.defaults.page_not_found``, the same page ``Http404`` gives). The JSON API has its
own handler (``{"detail": ...}``), registered on the django-ninja API. A multipart body it cannot
parse (no boundary) is a 400, and a backing service that is down a 503 page (:mod:`core.error_pages`).
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from django.utils.deprecation import MiddlewareMixin
from django.views.defaults import page_not_found, permission_denied
from whitenoise.middleware import WhiteNoiseMiddleware

from . import error_pages
from .errors import SERVICE_UNAVAILABLE, Forbidden, NotFound


class NotFoundMiddleware(MiddlewareMixin):
    """Sync and async capable (Django's ``MiddlewareMixin``): an async view's request passes it
    without a hop to a thread."""

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


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise's middleware (the static files, served before anything else), sync and async
    capable: WhiteNoise's own is sync only, so under ASGI every request, an SSE stream's included,
    hopped to a thread to pass it. A static file is still served from a thread (its file is read)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, settings=settings):
        super().__init__(get_response, settings)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)
