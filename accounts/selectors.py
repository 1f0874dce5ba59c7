"""Reads of per-user settings."""

from __future__ import annotations

from .models import Profile, Theme


def theme_for(user) -> str:
    """The user's colour theme: ``"system"``, ``"light"`` or ``"dark"`` (``"system"`` for an
    anonymous user or one who never chose). One query for a logged-in user."""
    if user is None or not user.is_authenticated:
        return Theme.SYSTEM
    theme = Profile.objects.filter(user=user).values_list("theme", flat=True).first()
    return theme or Theme.SYSTEM
