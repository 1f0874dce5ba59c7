"""The run audit page's URL, mounted by ``config/urls.py`` under ``/audit/`` in the ``audit``
namespace beside the audit app's own URLs (so it stays ``/audit/runs/<run_id>/``, ``audit:run``)."""

from django.urls import path

from . import views

urlpatterns = [
    path("runs/<uuid:run_id>/", views.run_audit, name="run"),
]
