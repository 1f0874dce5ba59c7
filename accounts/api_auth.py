"""How the JSON API knows its caller: a Bearer token (``manage.py create_api_token``) or the
browser's login session (CSRF-checked on unsafe methods). Neither: 401."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from .models import ApiToken


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        user = ApiToken.user_for(token)
        if user is not None:
            request.user = user
        return user


class SessionCookie(SessionAuth):
    """The browser's login session, CSRF-checked on unsafe methods. A request without a logged-in
    session is simply not authenticated by it: with no Bearer token either it answers 401, before
    CSRF is considered (a CSRF failure, 403, only concerns a logged-in browser)."""

    def __call__(self, request: HttpRequest):
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)
