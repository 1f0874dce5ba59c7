"""Model connections: the OpenAI-compatible endpoints runs are sent to, and the models each offers.

A **connection** is a base URL, an API key (a :class:`core.fields.SecretTextField`: encrypted at
rest, never shown back), optional extra headers (encrypted the same way), a read timeout and an
``enabled`` switch. It is owned by a user (only they see and use it) or shared (``owner`` empty,
made by an administrator; everyone may use it). Deleting one keeps its row (``deleted_at``), so
agents and runs that name it fail with its name instead of silently using another endpoint.

The **default connection** (``from_environment``) is the endpoint of ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``: its URL and key are read from the settings each time, so existing set-ups and
tests behave as before. Agents and runs with no connection use it; its row is created on first use
(:func:`connections.selectors.default_connection`).

A connection's **models** (:class:`ConnectionModel`) come from its endpoint's ``GET /v1/models``
(cached here; a refresh fetches them again) or are added by hand. Each may carry its own context
window and prices; empty ones fall back to the settings (``ARBOR_MODEL_CONTEXT_WINDOWS``,
``ARBOR_DEFAULT_CONTEXT_WINDOW``, ``ARBOR_MODEL_PRICES``).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from core.fields import SecretTextField
from core.prices import Price, price_for
from core.redact import mask_url, without_userinfo
from core.tokens import configured_context_window

from .endpoint import Endpoint

DEFAULT_NAME = "Default"


class ConnectionUnusable(Exception):
    """A run's connection is disabled or deleted; the message names it and says what to do."""


class Health(models.TextChoices):
    OK = "ok", "reachable"
    ERROR = "error", "answers with an error"
    UNREACHABLE = "unreachable", "unreachable"


class ConnectionQuerySet(models.QuerySet):
    def alive(self) -> ConnectionQuerySet:
        return self.filter(deleted_at__isnull=True)

    def visible_to(self, user) -> ConnectionQuerySet:
        """Live connections ``user`` may use: their own and the shared ones; the default first, then by name."""
        return (self.alive().filter(models.Q(owner=user) | models.Q(owner__isnull=True))
                .order_by("-from_environment", Lower("name"), "pk"))


class Connection(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="model_connections",
        help_text="Empty: shared with every user (made by an administrator).",
    )
    name = models.CharField(max_length=100)
    base_url = models.CharField(max_length=500, blank=True,
                                help_text="The OpenAI-compatible API root, e.g. http://127.0.0.1:8001/v1.")
    api_key = SecretTextField(blank=True, help_text="Encrypted at rest; never shown back.")
    extra_headers = SecretTextField(blank=True, help_text="A JSON object of header names to values; encrypted.")
    timeout = models.FloatField(null=True, blank=True,
                                help_text="Seconds of silence allowed in a reply; empty: ARBOR_MODEL_READ_TIMEOUT.")
    enabled = models.BooleanField(default=True)
    trusted = models.BooleanField(
        default=False, help_text="Set by an administrator: may reach any address (loopback, private networks).",
    )
    from_environment = models.BooleanField(
        default=False, editable=False, help_text="The default connection: OPENAI_BASE_URL and OPENAI_API_KEY.",
    )
    models_refreshed_at = models.DateTimeField(null=True, blank=True)
    models_error = models.TextField(blank=True)
    health = models.CharField(max_length=16, choices=Health.choices, blank=True)
    health_latency_ms = models.FloatField(null=True, blank=True)
    health_message = models.TextField(blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Coalesce("owner", 0), Lower("name"), name="connection_owner_name",
                condition=models.Q(deleted_at__isnull=True, from_environment=False),
                violation_error_message="You already have a connection with this name.",
            ),
            models.UniqueConstraint(fields=["from_environment"], condition=models.Q(from_environment=True),
                                    name="connection_one_default"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_shared(self) -> bool:
        return self.owner_id is None

    @property
    def restricted(self) -> bool:
        """Its requests go to public addresses only (and ``ARBOR_CONNECTION_ALLOWED_NETWORKS``; see
        :mod:`connections.guard`): a user's own connection, unless an administrator trusted it. The
        default connection and shared ones (made by administrators) are not restricted."""
        return not (self.from_environment or self.owner_id is None or self.trusted)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def url(self) -> str:
        """The base URL in use (the environment's for the default connection)."""
        return settings.OPENAI_BASE_URL if self.from_environment else self.base_url

    @property
    def shown_url(self) -> str:
        """:attr:`url` with any password or secret query parameter masked (for pages, logs, audit)."""
        return mask_url(self.url)

    @property
    def key(self) -> str:
        return settings.OPENAI_API_KEY if self.from_environment else self.api_key

    @property
    def has_key(self) -> bool:
        return bool(self.key)

    @property
    def headers(self) -> dict[str, str]:
        """The extra headers (decrypted); {} when none or unreadable."""
        try:
            data = json.loads(self.extra_headers) if self.extra_headers else {}
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    @property
    def read_timeout(self) -> float:
        return self.timeout or settings.ARBOR_MODEL_READ_TIMEOUT

    @property
    def reachable(self) -> bool | None:
        """True when the last health check got an HTTP answer; None before any check."""
        return None if not self.health else self.health != Health.UNREACHABLE

    def endpoint(self) -> Endpoint:
        """What a model call needs: URL, key, headers, timeout, and the name it is reported by.
        A user name and password in the URL are never sent (the HTTP client would send them as
        Basic credentials in place of the key): Basic credentials go in an ``Authorization``
        extra header, which is encrypted at rest."""
        return Endpoint(name=self.name, base_url=without_userinfo(self.url), api_key=self.key,
                        headers=tuple(sorted(self.headers.items())), read_timeout=self.read_timeout,
                        connection_id=self.pk, restricted=self.restricted)

    def check_usable(self) -> None:
        """Raise :class:`ConnectionUnusable` (naming this connection) when it is deleted or disabled."""
        if self.is_deleted:
            raise ConnectionUnusable(f"The connection “{self.name}” was deleted; pick another connection "
                                     "(Connections page, or the agent's settings) and retry.")
        if not self.enabled:
            raise ConnectionUnusable(f"The connection “{self.name}” is disabled; enable it on the Connections "
                                     "page or pick another connection, then retry.")


class ConnectionModel(models.Model):
    """A model a connection offers: listed by its endpoint (``listed``) or added by hand."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200)
    listed = models.BooleanField(default=False, help_text="In the endpoint's /v1/models at the last refresh.")
    added_by_hand = models.BooleanField(default=False)
    listed_context_window = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens, as the endpoint reports it (vLLM max_model_len, context_length).",
    )
    context_window = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens; empty: as listed, else ARBOR_MODEL_CONTEXT_WINDOWS or the default.",
    )
    prompt_price = models.FloatField(null=True, blank=True, help_text="USD per 1M prompt tokens; empty: settings.")
    completion_price = models.FloatField(null=True, blank=True,
                                         help_text="USD per 1M completion tokens; empty: settings.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "name"], name="connection_model_name")]
        ordering = ["connection_id", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_context_window(self) -> int:
        """Tokens: set by hand, else as the endpoint lists it, else from the settings."""
        return self.context_window or self.listed_context_window or configured_context_window(self.name)

    @property
    def window_source(self) -> str:
        if self.context_window:
            return "set here"
        return "listed by the endpoint" if self.listed_context_window else "settings"

    @property
    def has_own_price(self) -> bool:
        return self.prompt_price is not None or self.completion_price is not None

    @property
    def price(self) -> Price | None:
        """USD per 1M tokens: this model's own prices (a missing side is 0), else ``ARBOR_MODEL_PRICES``."""
        if self.has_own_price:
            return Price(prompt=self.prompt_price or 0.0, completion=self.completion_price or 0.0)
        return price_for(self.name)
