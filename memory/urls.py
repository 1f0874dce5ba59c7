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
