"""Writes of per-user settings."""

from __future__ import annotations

from django.db import transaction

from core.errors import InvalidInput

from .models import Profile, Theme


@transaction.atomic
def theme_set(*, user, theme: str) -> str:
    """Remember ``user``'s colour theme (``system``, ``light`` or ``dark``); returns it.

    Raises InvalidInput for any other value."""
    if theme not in Theme.values:
        raise InvalidInput("theme must be system, light or dark")
    Profile.objects.update_or_create(user=user, defaults={"theme": theme})
    return theme
