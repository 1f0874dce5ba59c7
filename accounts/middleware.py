from django.contrib.auth.middleware import LoginRequiredMiddleware


class ArborLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Django's LoginRequiredMiddleware, except for ``/api/``: the API authenticates each request
    itself (session or Bearer token) and answers 401 JSON instead of redirecting to a login page."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
