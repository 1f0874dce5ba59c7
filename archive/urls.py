from django.urls import path

from . import views

app_name = "archive"

urlpatterns = [
    path("", views.import_page, name="import"),
    path("import", views.import_upload, name="upload"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job"),
    path("s/<uuid:session_id>/export/<str:format>", views.session_export, name="session_export"),
]
