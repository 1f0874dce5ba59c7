"""API tokens: ``Authorization: Bearer <token>``. Only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "arb_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="The first characters, to tell tokens apart.")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, *, user, name: str = "") -> tuple[ApiToken, str]:
        """Create a token for ``user``; returns the row and the token itself (shown once)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = cls.objects.create(user=user, name=name, key_hash=hash_token(token), prefix=token[:12])
        return row, token

    @classmethod
    def user_for(cls, token: str):
        row = cls.objects.select_related("user").filter(key_hash=hash_token(token)).first()
        if row is None or not row.user.is_active:
            return None
        return row.user


class Theme(models.TextChoices):
    """The colour theme of the pages: ``system`` follows the browser's ``prefers-color-scheme``."""

    SYSTEM = "system", "System"
    LIGHT = "light", "Light"
    DARK = "dark", "Dark"


class Profile(models.Model):
    """Per-user settings of the pages (one row per user, created when a setting is first changed)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="profile")
    theme = models.CharField(max_length=8, choices=Theme.choices, default=Theme.SYSTEM)

    def __str__(self) -> str:
        return f"profile of {self.user}"
