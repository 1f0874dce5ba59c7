from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from audit.urls import urlpatterns as audit_urls
from config.api import api
from conversations.audit_urls import urlpatterns as run_audit_urls

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("compare/", include("comparisons.urls")),
    path("audit/", include((audit_urls + run_audit_urls, "audit"))),  # a run's audit page lives in conversations
    path("archive/", include("archive.urls")),
    path("connections/", include("connections.urls")),
    path("memory/", include("conversations.search_urls")),  # namespace "memory": memory search pages
    path("", include("conversations.branch_urls")),  # namespace "branches": labels, diff, prune, share links
    path("", include("conversations.urls")),
]

# Under /api/ every answer is JSON, unknown routes included; a backing service down is a 503.
handler400 = "core.error_pages.bad_request"
handler404 = "core.error_pages.not_found"
handler500 = "core.error_pages.server_error"
