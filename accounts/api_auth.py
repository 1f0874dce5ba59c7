"""How the JSON API knows its caller: a Bearer token (``manage.py create_api_token``) or the
browser's login session (CSRF-checked on unsafe methods). Neither: 401."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from core.asyncdb import request_call

from .models import ApiToken


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        user = ApiToken.user_for(token)
        if user is not None:
            request.user = user
        return user


class AsyncBearerToken(BearerToken):
    """:class:`BearerToken` for async operations: the token is looked up through
    :func:`core.asyncdb.request_call`, so it waits its turn at the web process's database gate and
    gives its connection back at once (an async operation's request may stay open for a whole
    stream). The same scheme as :class:`BearerToken`, under its name in the OpenAPI schema."""

    async def authenticate(self, request: HttpRequest, token: str):
        user = await request_call(ApiToken.user_for)(token)
        if user is not None:
            request.user = user
        return user


AsyncBearerToken.__name__ = AsyncBearerToken.__qualname__ = BearerToken.__name__  # one scheme in the OpenAPI schema


class SessionCookie(SessionAuth):
    """The browser's login session, CSRF-checked on unsafe methods. A request without a logged-in
    session is simply not authenticated by it: with no Bearer token either it answers 401, before
    CSRF is considered (a CSRF failure, 403, only concerns a logged-in browser)."""

    def __call__(self, request: HttpRequest):
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


ASYNC_AUTH = [AsyncBearerToken(), SessionCookie()]  # the API's authentication, for its async operations
