from django.urls import path

from . import seen_views
from .views import chat, runs, sessions, tree

app_name = "conversations"

urlpatterns = [
    path("", sessions.session_list, name="session_list"),
    path("s/new", sessions.session_new, name="session_new"),
    path("s/<uuid:session_id>/", chat.session_detail, name="session_detail"),
    path("s/<uuid:session_id>/older", chat.session_older, name="session_older"),
    path("s/<uuid:session_id>/tree/", tree.session_tree, name="session_tree"),
    path("s/<uuid:session_id>/tree/map", tree.session_tree_map, name="session_tree_map"),
    path("s/<uuid:session_id>/rename", sessions.session_rename, name="session_rename"),
    path("s/<uuid:session_id>/delete", sessions.session_delete, name="session_delete"),
    path("s/<uuid:session_id>/restore", sessions.session_restore, name="session_restore"),
    path("s/<uuid:session_id>/runs", runs.run_create, name="run_create"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/", runs.run_turn, name="run_turn"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/open", chat.branch_open, name="branch_open"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/stream", runs.run_stream, name="run_stream"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/edit", runs.run_edit, name="run_edit"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/regenerate", runs.run_regenerate, name="run_regenerate"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/rewind", runs.run_rewind, name="run_rewind"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/fork", runs.run_fork, name="run_fork"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/cancel", runs.run_cancel, name="run_cancel"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/continue", runs.run_continue, name="run_continue"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/rate", runs.run_rate, name="run_rate"),
    path("s/<uuid:session_id>/pin", sessions.session_pin, name="session_pin"),
    path("runs/<uuid:run_id>/context", seen_views.run_context, name="run_context"),
]
