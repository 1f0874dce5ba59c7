from django.apps import AppConfig


class BranchesConfig(AppConfig):
    """A Django app only for its template tags (``{% load branch_tags %}``); no models."""

    name = "branches"
