from django.urls import path

from . import views

app_name = "audit"

# config/urls.py mounts these under /audit/ together with runaudit.urls (a run's audit
# page, audit:run): one "audit" namespace, while audit itself imports no app.
urlpatterns = [
    path("log/export", views.log_export, name="log_export"),
]
