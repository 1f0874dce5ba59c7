"""Makes the current request known to the audit log (actor, IP, user agent) for its duration."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from .log import reset_request, set_request


class AuditContextMiddleware:
    """Put the request in :mod:`audit.log`'s context variable; sync and async capable.

    Place it after ``AuthenticationMiddleware``. ``request.user`` is read lazily when a row is
    written, so an API request authenticated later by a Bearer token is attributed to its user.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        token = set_request(request)
        try:
            return self.get_response(request)
        finally:
            reset_request(token)

    async def __acall__(self, request):
        token = set_request(request)
        try:
            return await self.get_response(request)
        finally:
            reset_request(token)
