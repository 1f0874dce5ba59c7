from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

from audit.urls import urlpatterns as audit_urls
from config.api import api
from memory.urls import chat_urlpatterns as memory_chat_urls
from runaudit.urls import urlpatterns as run_audit_urls


def _favicon(request):
    """``/favicon.ico`` → the static icon, resolved per request (with the manifest storage of
    production, ``static()`` at import time would need collectstatic before any command could load the URLs)."""
    return HttpResponsePermanentRedirect(static("arbor/favicon.svg"))


urlpatterns = [
    # Browsers and tools ask for /favicon.ico on pages that name no icon (a 404 line in the log otherwise).
    path("favicon.ico", login_not_required(_favicon)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("compare/", include("comparisons.urls")),
    path("audit/", include((audit_urls + run_audit_urls, "audit"))),  # a run's audit page: runaudit
    path("archive/", include("archive.urls")),
    path("connections/", include("connections.urls")),
    path("agents/", include("memory.urls")),
    path("memory/", include("search.urls")),  # namespace "memory": memory search pages
    path("memory/", include((memory_chat_urls, "chatmemory"))),  # namespace "chatmemory": pins and compaction controls
    path("", include("merges.urls")),  # namespace "merges": fan-out, fuse, the merge dialog and its undo
    path("", include("branches.urls")),  # namespace "branches": labels, diff, prune, share links
    path("", include("conversations.urls")),
]

# Under /api/ every answer is JSON, unknown routes included; a backing service down is a 503.
handler400 = "core.error_pages.bad_request"
handler404 = "core.error_pages.not_found"
handler500 = "core.error_pages.server_error"
