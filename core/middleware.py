"""Turning a service's :class:`core.errors.NotFound` into the site's 404 page (and
:class:`core.errors.Forbidden` into its 403 page).

Pages look objects up through :mod:`conversations.selectors` (and other services) that raise
NotFound; instead of every view re-wrapping it, this middleware answers Django's 404 page for it
(``django.views.defaults.page_not_found``, the same page ``Http404`` gives). The JSON API has its
own handler (``{"detail": ...}``), registered on the django-ninja API. A multipart body it cannot
parse (no boundary) is a 400, and a backing service that is down a 503 page (:mod:`core.error_pages`).

:func:`run_mixin_middleware_in_one_thread` (called by ``config.asgi``) decides how Django's own
middleware run under ASGI.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from django.utils.deprecation import MiddlewareMixin
from django.views.defaults import page_not_found, permission_denied

from . import error_pages
from .errors import SERVICE_UNAVAILABLE, Forbidden, NotFound


def run_mixin_middleware_in_one_thread() -> None:
    """Run the middleware built on Django's ``MiddlewareMixin`` (security, sessions, common, CSRF,
    authentication, messages, clickjacking, CSP: most of ``settings.MIDDLEWARE``) as sync
    middleware, so that under ASGI a request passes all of them in one thread, in one hop.

    ``MiddlewareMixin`` says it is async capable, but in async mode it runs each of its hooks with
    its own ``sync_to_async`` (``django/utils/deprecation.py``, ``MiddlewareMixin.__acall__``): 14
    thread hand-offs a request for ours, each a wake-up of the request's thread and of the event
    loop, contending for the interpreter lock with every other request. Declared sync only, Django
    adapts a run of them once (``BaseHandler.load_middleware``/``adapt_method_mode``): the chain runs
    in the request's thread and comes back to the event loop once, for the view. Measured by
    ``python -m bench engine`` (see ``docs/dev/benchmarks.md``): the web process's CPU per run fell
    from ~28 to ~20 ms one run at a time; ``tests/core/test_middleware_hops.py`` counts the hops.

    Call it before the ASGI handler is built (``get_asgi_application``). It changes the class
    attribute Django reads when it loads the middleware; WSGI and the test client's sync handler run
    them sync anyway.
    """
    MiddlewareMixin.async_capable = False


class NotFoundMiddleware(MiddlewareMixin):
    """Only ``process_exception``: passing it costs no hop to a thread in either mode."""

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
