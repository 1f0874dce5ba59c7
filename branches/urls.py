"""URLs of the branch tools (:mod:`branches.views`), namespace ``branches``: a session's
branches page, labels, the diff, prune and undo, share links, and ``shared/<token>/`` (no login)."""

from django.urls import path

from . import views

app_name = "branches"

urlpatterns = [
    path("s/<uuid:session_id>/branches/", views.branches_page, name="page"),
    path("s/<uuid:session_id>/diff/", views.diff_page, name="diff"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/label", views.label_create, name="label_create"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/versions-diff", views.versions_diff, name="versions_diff"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/prune", views.prune, name="prune"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/share", views.share_create, name="share_create"),
    path("s/<uuid:session_id>/labels/<uuid:label_id>/rename", views.label_rename, name="label_rename"),
    path("s/<uuid:session_id>/labels/<uuid:label_id>/delete", views.label_delete, name="label_delete"),
    path("s/<uuid:session_id>/prunes/<uuid:prune_id>/undo", views.prune_undo, name="prune_undo"),
    path("s/<uuid:session_id>/shares/<uuid:share_id>/revoke", views.share_revoke, name="share_revoke"),
    path("shared/<str:token>/", views.shared_branch, name="shared"),
]
