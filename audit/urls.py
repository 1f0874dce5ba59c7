from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("runs/<str:run_id>/", views.run_audit, name="run"),
    path("log/export", views.log_export, name="log_export"),
]
