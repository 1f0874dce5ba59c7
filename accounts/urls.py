from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("theme", views.theme, name="theme"),
]
