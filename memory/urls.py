"""The Agents page (namespace ``agents``, under ``/agents/``) and the memory controls reached from the
chat: pins, the Pinned list, a compaction's Expand / Edit / Undo page and Compact now."""

from django.urls import path

from . import views

app_name = "agents"

urlpatterns = [
    path("", views.index, name="index"),
    path("add", views.create, name="create"),
    path("<int:agent_id>/", views.detail, name="detail"),
    path("<int:agent_id>/duplicate", views.duplicate, name="duplicate"),
    path("<int:agent_id>/delete", views.delete, name="delete"),
]

chat_urlpatterns = [  # namespace "chatmemory", under /memory/ (config.urls)
    path("runs/<uuid:run_id>/pin", views.pin_toggle, name="pin_toggle"),
    path("runs/<uuid:run_id>/pinned", views.pinned, name="pinned"),
    path("runs/<uuid:run_id>/compact", views.compact, name="compact"),
    path("runs/<uuid:run_id>/settings", views.chat_settings, name="settings"),
    path("compactions/<int:compaction_id>/", views.compaction_detail, name="compaction"),
    path("compactions/<int:compaction_id>/undo", views.compaction_undo, name="compaction_undo"),
]
