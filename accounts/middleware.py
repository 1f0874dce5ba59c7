from django.contrib.auth.middleware import LoginRequiredMiddleware

from .models import ApiToken

# The API's schema and docs pages describe every endpoint: they need a login like any page.
API_DOC_URL_NAMES = {"openapi-json", "openapi-view"}


class ArborLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Django's LoginRequiredMiddleware, except for ``/api/``: the API authenticates each request
    itself (session or Bearer token) and answers 401 JSON instead of redirecting to a login page.
    The API's OpenAPI schema and docs are pages like the others (login required)."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            match = getattr(request, "resolver_match", None)
            if match is None or match.url_name not in API_DOC_URL_NAMES:
                return None
            if not request.user.is_authenticated and _bearer_user(request) is not None:
                return None  # API clients read the schema with their token
        return super().process_view(request, view_func, view_args, view_kwargs)


def _bearer_user(request):
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
