"""Reads with ownership for connections, and what the engine asks of them.

A user sees their own live connections and the shared ones; another user's connection answers
the same 404 as an id that does not exist (:class:`core.errors.NotFound`). Changing a shared
connection takes an administrator (:func:`can_manage`): anyone else gets 403.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from core.errors import Forbidden, NotFound
from core.prices import Price, price_for
from core.redact import mask_url
from core.tokens import configured_context_window

from .endpoint import Endpoint
from .models import DEFAULT_NAME, Connection, ConnectionModel


def default_connection() -> Connection:
    """The default connection (``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``), created on first use."""
    connection = Connection.objects.filter(from_environment=True).first()
    if connection is not None:
        return connection
    try:
        with transaction.atomic():
            return Connection.objects.create(from_environment=True, name=DEFAULT_NAME, owner=None)
    except IntegrityError:  # another process created it first
        return Connection.objects.get(from_environment=True)


def is_admin(user) -> bool:
    """May make and change shared connections: active staff with the ``change_connection`` permission."""
    return bool(user.is_active and user.is_staff and user.has_perm("connections.change_connection"))


def can_manage(user, connection: Connection) -> bool:
    return connection.owner_id == user.pk if connection.owner_id is not None else is_admin(user)


def visible_connections(user):
    """Live connections ``user`` may use (own and shared), the default first; the default is made if missing."""
    default_connection()
    return Connection.objects.visible_to(user)


def visible_connections_with_models(user):
    """:func:`visible_connections` with their models prefetched (two queries when evaluated)."""
    return visible_connections(user).prefetch_related("models")


def models_of(connection: Connection) -> list:
    """The connection's models by name."""
    return list(connection.models.order_by("name"))


MAX_ID = 2**63 - 1  # the largest bigint: a larger id matches nothing (and must not reach the database)


def object_id(value, what: str) -> int:
    """``value`` as a row id (a positive bigint), else NotFound naming ``what``: a malformed or
    out-of-range id is 404, as one that does not exist."""
    try:
        pk = int(str(value).strip())
    except (TypeError, ValueError):
        raise NotFound(f"No {what} with id {str(value)[:40]!r}.") from None
    if not 1 <= pk <= MAX_ID:
        raise NotFound(f"No {what} with id {pk}.")
    return pk


def get_connection_for(user, connection_id) -> Connection:
    """A live connection ``user`` may use; NotFound otherwise (another user's, deleted, malformed id)."""
    connection = Connection.objects.visible_to(user).filter(pk=object_id(connection_id, "connection")).first()
    if connection is None:
        raise NotFound(f"No connection with id {connection_id}.")
    return connection


def get_connection_to_manage(user, connection_id) -> Connection:
    """A live connection ``user`` may change: NotFound as :func:`get_connection_for`; Forbidden for
    a shared one unless ``user`` is an administrator."""
    connection = get_connection_for(user, connection_id)
    if not can_manage(user, connection):
        raise Forbidden(f"The connection “{connection.name}” is shared; only an administrator can change it.")
    return connection


def get_model_for(user, connection: Connection, model_id) -> ConnectionModel:
    model = ConnectionModel.objects.filter(connection=connection, pk=object_id(model_id, "model")).first()
    if model is None:
        raise NotFound(f"No model with id {model_id} on this connection.")
    return model


def pickable_models(user):
    """Every model of every connection ``user`` may use, enabled connections only, ordered by
    connection (the default first) then name; ``.connection`` is joined."""
    visible = Connection.objects.visible_to(user).filter(enabled=True)  # a missing default has no models yet
    return (ConnectionModel.objects.filter(connection__in=visible).select_related("connection")
            .order_by("-connection__from_environment", "connection__name", "connection_id", "name"))


def endpoint_for(connection: Connection | None) -> Endpoint:
    """The endpoint a model call on ``connection`` goes to (None: the default connection).
    Raises :class:`connections.models.ConnectionUnusable` naming it when it is disabled or deleted."""
    connection = connection if connection is not None else default_connection()
    connection.check_usable()
    return connection.endpoint()


def base_url_for(connection: Connection | None) -> str:
    """The URL of ``connection`` (None: the default connection's), without touching the database
    for the default: what token counters are keyed by."""
    if connection is None:
        return settings.OPENAI_BASE_URL
    return connection.url


def _entry(connection_id: int | None, model: str) -> ConnectionModel | None:
    qs = ConnectionModel.objects.filter(name=model)
    if connection_id is None:
        return qs.filter(connection__from_environment=True).first()
    return qs.filter(connection_id=connection_id).first()


def context_window_of(connection_id: int | None, model: str) -> int:
    """Tokens of ``model``'s context window on a connection (None: the default): the model's own
    figure (set by hand, else as listed), else the settings (:func:`core.tokens.configured_context_window`)."""
    entry = _entry(connection_id, model)
    return entry.effective_context_window if entry is not None else configured_context_window(model)


def price_of(connection_id: int | None, model: str) -> Price | None:
    """USD per 1M tokens of ``model`` on a connection: its own prices, else ``ARBOR_MODEL_PRICES``."""
    entry = _entry(connection_id, model)
    return entry.price if entry is not None else price_for(model)


def cost_of(connection_id: int | None, model: str, prompt_tokens: int | None,
            completion_tokens: int | None) -> float | None:
    """USD of one model call's usage on a connection, or None (no price, or a count unknown)."""
    price = price_of(connection_id, model)
    if price is None or prompt_tokens is None or completion_tokens is None:
        return None
    return price.cost(prompt_tokens, completion_tokens)


def connection_named(owner_id: int | None, name: str) -> Connection | None:
    """The live connection called ``name`` (case-insensitive) that ``owner_id``'s agents may use:
    their own first, then a shared one; for a shared agent (no owner) shared ones only."""
    qs = Connection.objects.alive().filter(name__iexact=name.strip())
    own = qs.filter(owner_id=owner_id).first() if owner_id is not None else None
    return own or qs.filter(owner__isnull=True).order_by("-from_environment", "pk").first()


def endpoint_summary(connection: Connection | None, recorded: dict | None = None) -> dict:
    """How pages show where a call went: ``{"name", "url", "has_key"}`` — what a model call
    recorded (``recorded``: its step's request) when given, else ``connection`` as it is now (None:
    the default). The URL has any password masked; the key itself is never part of it."""
    recorded = recorded or {}
    name = recorded.get("connection") or (connection.name if connection is not None else DEFAULT_NAME)
    url = recorded.get("base_url") or base_url_for(connection)
    has_key = connection.has_key if connection is not None else bool(settings.OPENAI_API_KEY)
    return {"name": name, "url": mask_url(url), "has_key": has_key}


def prices_for(pairs) -> dict[tuple[int | None, str], Price | None]:
    """:func:`price_of` for many ``(connection_id, model)`` pairs in one query (None: the default connection)."""
    pairs = set(pairs)
    if not pairs:
        return {}
    ids = {cid for cid, _ in pairs if cid is not None}
    rows = (ConnectionModel.objects.filter(name__in={m for _, m in pairs})
            .filter(Q(connection_id__in=ids) | Q(connection__from_environment=True))
            .select_related("connection"))
    found = {}
    for row in rows:
        found[(row.connection_id, row.name)] = row
        if row.connection.from_environment:
            found[(None, row.name)] = row
    return {(cid, m): found[(cid, m)].price if (cid, m) in found else price_for(m) for cid, m in pairs}


def find_model(models, connection_id: int | None, name: str) -> ConnectionModel | None:
    """The entry for ``name`` on a connection (None: the default) among ``models`` already read
    (e.g. :func:`pickable_models`, whose ``.connection`` is joined), without a query."""
    for model in models:
        if model.name == name and (model.connection_id == connection_id
                                   or (connection_id is None and model.connection.from_environment)):
            return model
    return None


def deletable(connections):
    """The connections of ``connections`` that may be deleted (not the one the environment configures)."""
    return connections.filter(from_environment=False)
