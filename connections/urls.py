from django.urls import path

from . import views

app_name = "connections"

urlpatterns = [
    path("", views.index, name="index"),
    path("add", views.create, name="create"),
    path("<int:connection_id>/", views.detail, name="detail"),
    path("<int:connection_id>/delete", views.delete, name="delete"),
    path("<int:connection_id>/health", views.health, name="health"),
    path("<int:connection_id>/refresh", views.refresh, name="refresh"),
    path("<int:connection_id>/models/add", views.model_add, name="model_add"),
    path("<int:connection_id>/models/<int:model_id>", views.model_edit, name="model_edit"),
    path("<int:connection_id>/models/<int:model_id>/delete", views.model_delete, name="model_delete"),
]
