"""The JSON API of model connections (a django-ninja router, mounted by :mod:`config.api`).

Connections: list, create, read, update, delete; per connection: refresh its models, check its
health, add/change/remove models by hand. The caller sees their own connections and the shared
ones; another user's connection is 404, as an id that does not exist. Shared connections can be
made and changed by administrators only (403). The API key and extra header values are
write-only: no answer contains them (``has_key`` and ``extra_header_names`` say what is set).
Saving a connection checks its endpoint; when that fails the connection is saved anyway and the
answer's ``warning`` says why. A user's own connection may reach public addresses only (and the
networks of ``ARBOR_CONNECTION_ALLOWED_NETWORKS``): another address is a 400 (:mod:`connections.guard`).
"""

from __future__ import annotations

from datetime import datetime

from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate

from core.api_kit import BODY, MAX_PAGE_SIZE, Pages, answers

from . import services
from .models import Connection, ConnectionModel
from .selectors import (
    can_manage,
    get_connection_for,
    get_connection_to_manage,
    get_model_for,
    models_of,
    visible_connections_with_models,
)

router = Router(tags=["connections"])


class ModelOut(Schema):
    id: int
    name: str
    listed: bool = Field(description="In the endpoint's /v1/models at the last refresh.")
    added_by_hand: bool
    context_window: int = Field(description="Tokens in use: set here, else as listed, else the settings'.")
    context_window_source: str = Field(description="'set here', 'listed by the endpoint' or 'settings'.")
    own_context_window: int | None
    prompt_price: float | None = Field(description="USD per 1M prompt tokens in use (None: no price).")
    completion_price: float | None = Field(description="USD per 1M completion tokens in use.")
    own_prices: bool = Field(description="True when this model's prices are set here (else the settings').")


class HealthOut(Schema):
    status: str = Field(description="'ok', 'error' (an HTTP answer that is not a model list), 'unreachable', "
                                    "or '' before any check.")
    reachable: bool | None
    latency_ms: float | None
    message: str
    checked_at: datetime | None


class ConnectionOut(Schema):
    id: int
    name: str
    base_url: str = Field(description="Any password or secret query parameter in it masked.")
    default: bool = Field(description="The default connection: OPENAI_BASE_URL / OPENAI_API_KEY.")
    shared: bool
    manageable: bool = Field(description="The caller may change it (their own, or shared and an administrator).")
    has_key: bool
    extra_header_names: list[str]
    timeout: float | None
    enabled: bool
    trusted: bool = Field(description="Marked by an administrator: may reach any address. Otherwise a user's own "
                                      "connection reaches public addresses and ARBOR_CONNECTION_ALLOWED_NETWORKS only.")
    health: HealthOut
    models_refreshed_at: datetime | None
    models_error: str
    models: list[ModelOut]
    created_at: datetime
    updated_at: datetime


class SavedOut(ConnectionOut):
    warning: str = Field(description="Empty when the endpoint answered with its models; else why it did not "
                                     "(the connection is saved anyway).")


class RefreshOut(Schema):
    health: HealthOut
    models: list[ModelOut]


class ConnectionIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    base_url: str
    api_key: str = Field("", description="Write-only.")
    extra_headers: dict[str, str] | None = Field(None, description="Write-only header values.")
    timeout: float | None = Field(None, description="Seconds (1–3600); null: ARBOR_MODEL_READ_TIMEOUT.")
    enabled: bool = True
    shared: bool = Field(False, description="Shared with every user (administrators only).")
    trusted: bool = Field(False, description="May reach any address, e.g. a private network (administrators only).")


class ConnectionPatch(Schema):
    """Only the fields sent change. ``api_key: ""`` removes the key, ``extra_headers: {}`` the
    headers, ``timeout: null`` goes back to the server's default."""

    name: str | None = Field(None, min_length=1, max_length=100)
    base_url: str | None = None
    api_key: str | None = None
    extra_headers: dict[str, str] | None = None
    timeout: float | None = None
    enabled: bool | None = None
    shared: bool | None = None
    trusted: bool | None = None


class ModelIn(Schema):
    name: str = ""
    context_window: int | None = None
    prompt_price: float | None = None
    completion_price: float | None = None


class ModelPatch(Schema):
    """Only the fields sent change; null goes back to the settings' default."""

    context_window: int | None = None
    prompt_price: float | None = None
    completion_price: float | None = None


def model_out(model: ConnectionModel) -> dict:
    price = model.price
    return {
        "id": model.pk, "name": model.name, "listed": model.listed, "added_by_hand": model.added_by_hand,
        "context_window": model.effective_context_window, "context_window_source": model.window_source,
        "own_context_window": model.context_window,
        "prompt_price": price.prompt if price else None, "completion_price": price.completion if price else None,
        "own_prices": model.has_own_price,
    }


def health_out(connection: Connection) -> dict:
    return {"status": connection.health, "reachable": connection.reachable, "latency_ms": connection.health_latency_ms,
            "message": connection.health_message, "checked_at": connection.health_checked_at}


def connection_out(request, connection: Connection, warning: str | None = None) -> dict:
    out = {
        "id": connection.pk, "name": connection.name, "base_url": connection.shown_url,
        "default": connection.from_environment, "shared": connection.is_shared,
        "manageable": can_manage(request.auth, connection), "has_key": connection.has_key,
        "extra_header_names": sorted(connection.headers), "timeout": connection.timeout,
        "enabled": connection.enabled, "trusted": connection.trusted, "health": health_out(connection),
        "models_refreshed_at": connection.models_refreshed_at, "models_error": connection.models_error,
        "models": [model_out(m) for m in connection.models.all()],
        "created_at": connection.created_at, "updated_at": connection.updated_at,
    }
    if warning is not None:
        out["warning"] = warning
    return out


@router.get("/connections", response=answers({200: list[ConnectionOut]}, 400, 404))
@paginate(Pages, page_size=50, max_page_size=MAX_PAGE_SIZE)
def list_connections(request):
    """The caller's connections and the shared ones (the default first), with their models and health."""
    connections = visible_connections_with_models(request.auth)
    return [connection_out(request, c) for c in connections]


@router.post("/connections", response=answers({201: SavedOut}, *BODY, 403))
def create_connection(request, payload: ConnectionIn):
    """Add a connection, then check it and fetch its models (a failure is a ``warning``, not a refusal)."""
    saved = services.connection_create(user=request.auth, **payload.dict())
    return Status(201, connection_out(request, saved.connection, saved.warning))


@router.get("/connections/{connection_id}", response=answers({200: ConnectionOut}, 404))
def get_connection(request, connection_id: str):
    return connection_out(request, get_connection_for(request.auth, connection_id))


@router.patch("/connections/{connection_id}", response=answers({200: SavedOut}, *BODY, 403, 404))
def update_connection(request, connection_id: str, payload: ConnectionPatch):
    """Change the fields sent. When the URL, key or headers change, the endpoint is checked again."""
    connection = get_connection_to_manage(request.auth, connection_id)
    changes = payload.dict(exclude_unset=True)
    if "timeout" in changes and changes["timeout"] is None:
        changes["timeout"] = ""  # back to the server's default
    saved = services.connection_update(user=request.auth, connection=connection, changes=changes)
    return connection_out(request, saved.connection, saved.warning)


@router.delete("/connections/{connection_id}", response=answers({204: None}, 403, 404, 409))
def delete_connection(request, connection_id: str):
    """Delete a connection; agents and runs on it then fail with its name. The default cannot be deleted (409)."""
    services.connection_delete(connection=get_connection_to_manage(request.auth, connection_id))
    return Status(204, None)


@router.post("/connections/{connection_id}/refresh", response=answers({200: RefreshOut}, 403, 404))
def refresh_models(request, connection_id: str):
    """Fetch the endpoint's ``/v1/models`` again: the models and the health it gave."""
    connection = get_connection_to_manage(request.auth, connection_id)
    services.connection_refresh_models(connection=connection)
    return {"health": health_out(connection), "models": [model_out(m) for m in models_of(connection)]}


@router.post("/connections/{connection_id}/health", response=answers({200: HealthOut}, 404))
def check_health(request, connection_id: str):
    """Check the endpoint now: reachable or not, latency, what it answered."""
    connection = get_connection_for(request.auth, connection_id)
    services.connection_check(connection=connection)
    return health_out(connection)


@router.post("/connections/{connection_id}/models", response=answers({201: ModelOut}, *BODY, 403, 404, 409))
def add_model(request, connection_id: str, payload: ModelIn):
    """Add a model by hand (for endpoints that list none)."""
    connection = get_connection_to_manage(request.auth, connection_id)
    data = payload.dict()
    model = services.model_add(connection=connection, name=data.pop("name"), **data)
    return Status(201, model_out(model))


@router.patch("/connections/{connection_id}/models/{model_id}", response=answers({200: ModelOut}, *BODY, 403, 404))
def update_model(request, connection_id: str, model_id: str, payload: ModelPatch):
    connection = get_connection_to_manage(request.auth, connection_id)
    model = get_model_for(request.auth, connection, model_id)
    return model_out(services.model_update(model=model, fields=payload.dict(exclude_unset=True)))


@router.delete("/connections/{connection_id}/models/{model_id}", response=answers({204: None}, 403, 404))
def delete_model(request, connection_id: str, model_id: str):
    connection = get_connection_to_manage(request.auth, connection_id)
    services.model_delete(model=get_model_for(request.auth, connection, model_id))
    return Status(204, None)
