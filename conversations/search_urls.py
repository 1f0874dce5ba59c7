from django.urls import path

from . import search_views

app_name = "memory"

urlpatterns = [
    path("search/", search_views.search, name="search"),
    path("branch/<str:run_id>/", search_views.branch, name="branch"),
]
