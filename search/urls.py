"""URLs of memory search (:mod:`search.views`), mounted at ``memory/`` under the
namespace ``memory`` (``memory:search``, ``memory:branch``)."""

from django.urls import path

from . import views as search_views

app_name = "memory"

urlpatterns = [
    path("search/", search_views.search_page, name="search"),
    path("branch/<uuid:run_id>/", search_views.branch, name="branch"),
]
