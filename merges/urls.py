"""Pages of fan-out, fuse and merge (namespace ``merges``): the composer's fan-out, the fuse form
under a fan-out, the merge dialog (pick, preview, confirm) and its undo."""

from django.urls import path

from . import views

app_name = "merges"

urlpatterns = [
    path("s/<uuid:session_id>/fan-out", views.fan_out, name="fan_out"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/column", views.fan_column, name="fan_column"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/fuse", views.fuse, name="fuse"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/fuse/dialog", views.fuse_dialog, name="fuse_dialog"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/merge", views.merge, name="merge"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/merge/digest", views.digest_draft, name="digest_draft"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/merge/undo", views.merge_undo, name="merge_undo"),
]
