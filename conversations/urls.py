from django.urls import path

from . import seen_views, views

app_name = "conversations"

urlpatterns = [
    path("", views.session_list, name="session_list"),
    path("s/new", views.session_new, name="session_new"),
    path("s/<uuid:session_id>/", views.session_detail, name="session_detail"),
    path("s/<uuid:session_id>/older", views.session_older, name="session_older"),
    path("s/<uuid:session_id>/tree/", views.session_tree, name="session_tree"),
    path("s/<uuid:session_id>/tree/map", views.session_tree_map, name="session_tree_map"),
    path("s/<uuid:session_id>/rename", views.session_rename, name="session_rename"),
    path("s/<uuid:session_id>/delete", views.session_delete, name="session_delete"),
    path("s/<uuid:session_id>/restore", views.session_restore, name="session_restore"),
    path("s/<uuid:session_id>/runs", views.run_create, name="run_create"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/", views.run_turn, name="run_turn"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/open", views.branch_open, name="branch_open"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/stream", views.run_stream, name="run_stream"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/edit", views.run_edit, name="run_edit"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/regenerate", views.run_regenerate, name="run_regenerate"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/rewind", views.run_rewind, name="run_rewind"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/fork", views.run_fork, name="run_fork"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/cancel", views.run_cancel, name="run_cancel"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/continue", views.run_continue, name="run_continue"),
    path("s/<uuid:session_id>/runs/<uuid:run_id>/rate", views.run_rate, name="run_rate"),
    path("s/<uuid:session_id>/pin", views.session_pin, name="session_pin"),
    path("runs/<uuid:run_id>/context", seen_views.run_context, name="run_context"),
]
