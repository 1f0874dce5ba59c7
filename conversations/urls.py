from django.urls import path

from . import views

app_name = "conversations"

urlpatterns = [
    path("", views.session_list, name="session_list"),
    path("s/new", views.session_new, name="session_new"),
    path("s/<str:session_id>/", views.session_detail, name="session_detail"),
    path("s/<str:session_id>/runs", views.run_create, name="run_create"),
    path("s/<str:session_id>/runs/<str:run_id>/", views.run_turn, name="run_turn"),
    path("s/<str:session_id>/runs/<str:run_id>/stream", views.run_stream, name="run_stream"),
    path("s/<str:session_id>/runs/<str:run_id>/rewind", views.run_rewind, name="run_rewind"),
    path("s/<str:session_id>/runs/<str:run_id>/fork", views.run_fork, name="run_fork"),
    path("s/<str:session_id>/runs/<str:run_id>/cancel", views.run_cancel, name="run_cancel"),
]
