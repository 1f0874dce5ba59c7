"""Template context for every page: the user's colour theme (``theme``), read lazily."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from .selectors import theme_for


def theme(request) -> dict:
    """``theme``: ``"system"``, ``"light"`` or ``"dark"`` (base.html puts it on ``<html data-theme>``)."""
    user = getattr(request, "user", None)
    return {"theme": SimpleLazyObject(lambda: theme_for(user))}
