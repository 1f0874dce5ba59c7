from django.contrib.auth.middleware import LoginRequiredMiddleware

from .models import ApiToken


class ArborLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Django's LoginRequiredMiddleware, except for ``/api/``: the API authenticates each request
    itself (session or Bearer token) and answers 401 JSON instead of redirecting to a login page;
    its OpenAPI schema and docs too (``config.api``: a login or a token, else 401 JSON)."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


def bearer_user(request):
    """The active user of the request's ``Authorization: Bearer <token>`` (also set as
    ``request.user``), or None without a valid token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    user = ApiToken.user_for(token.strip())
    if user is not None:
        request.user = user
    return user
