"""Writes for connections: create, update, delete (soft), check health, refresh the model list, and
models added by hand. Keyword-only; each write is one transaction. Saving checks the endpoint first
and then stores the connection with what the check found, in one transaction: an unreachable
endpoint is a warning (:attr:`Saved.warning`), not a refusal, and a request that fails saves nothing.
A restricted connection (:attr:`Connection.restricted`) whose address is refused by
:mod:`connections.guard` is a 400.

Validation is here, shared by the pages and the JSON API: a name (1–100 characters, unique per
owner, case-insensitive), an ``http(s)`` base URL, a key and header values without control
characters, at most :data:`MAX_HEADERS` extra headers with token names, a timeout of 1–3600 s.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import Conflict, Forbidden, InvalidInput
from core.text import clean_text

from .endpoint import Probe, answers, probe
from .guard import AddressRefused, check_url
from .models import Connection, ConnectionModel, Health
from .selectors import is_admin

MAX_HEADERS = 20
MAX_SECRET_CHARS = 4096
# RFC 9110 token characters; headers the HTTP client sets itself may not be overridden.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
RESERVED_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})
log = logging.getLogger(__name__)
MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 3600.0
MAX_PRICE = 1_000_000.0  # USD per 1M tokens
MAX_WINDOW = 100_000_000  # tokens


@dataclass
class Saved:
    """A saved connection and the check made right after saving (None when nothing reachable changed)."""

    connection: Connection
    check: Probe | None = None

    @property
    def warning(self) -> str:
        """Empty when the endpoint answered with a model list; else what went wrong (saved anyway)."""
        if self.check is None or self.check.health == Health.OK:
            return ""
        return f"Saved, but the endpoint did not answer as expected: {self.check.message}"


# --- validation ------------------------------------------------------------------------------------

def clean_base_url(value) -> str:
    url = clean_text(value, field="base_url", max_length=500)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise InvalidInput("base_url must be an http:// or https:// URL, e.g. http://127.0.0.1:8001/v1")
    if "@" in parts.netloc:
        raise InvalidInput("base_url must not contain a user name or password; to send HTTP Basic credentials, "
                           'add the extra header {"Authorization": "Basic …"} (stored encrypted)')
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise InvalidInput("base_url has a port that is not a number from 0 to 65535") from None
    return url.rstrip("/")


def clean_api_key(value) -> str:
    return clean_text(value, field="api_key", max_length=MAX_SECRET_CHARS, required=False)


def clean_headers(value) -> dict[str, str]:
    """Extra headers from a dict or its JSON text ("" or None: none)."""
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidInput('extra_headers must be a JSON object, e.g. {"X-Org": "team-a"}') from None
    if not isinstance(value, dict):
        raise InvalidInput('extra_headers must be a JSON object, e.g. {"X-Org": "team-a"}')
    if len(value) > MAX_HEADERS:
        raise InvalidInput(f"at most {MAX_HEADERS} extra headers")
    headers = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise InvalidInput(f"extra header name {str(name)[:40]!r} is not a valid HTTP header name")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidInput(f"extra header {name} is set by Arbor itself")
        if not isinstance(text, str):
            raise InvalidInput(f"extra header {name} must have a string value")
        headers[name] = clean_text(text, field=f"extra header {name}", max_length=MAX_SECRET_CHARS)
    return headers


def clean_timeout(value) -> float | None:
    if value in (None, ""):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InvalidInput("timeout must be a number of seconds") from None
    if isinstance(value, bool) or not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
        raise InvalidInput(f"timeout must be between {MIN_TIMEOUT:g} and {MAX_TIMEOUT:g} seconds")
    return seconds


def _clean_name(value) -> str:
    return clean_text(value, field="name", max_length=100)


def _full_clean(connection: Connection) -> None:
    """full_clean (the unique name per owner); a clash is InvalidInput."""
    try:
        connection.full_clean()
    except ValidationError as exc:
        raise InvalidInput("; ".join(exc.messages)) from None


def _insert_or_update(connection: Connection) -> None:
    """Save; a name taken meanwhile (the unique constraint) is InvalidInput."""
    try:
        with transaction.atomic():
            connection.save()
    except IntegrityError:
        raise InvalidInput("You already have a connection with this name.") from None


def _check_address(connection: Connection) -> None:
    """For a restricted connection, InvalidInput when its host is (or resolves to) an address it
    may not reach (:func:`connections.guard.check_url`); a name that does not resolve passes (the
    check after saving says so, and every request is checked again)."""
    if not connection.restricted:
        return
    try:
        check_url(connection.url)
    except AddressRefused as exc:
        raise InvalidInput(str(exc)) from None
    except (OSError, ValueError):
        pass


# --- connections -----------------------------------------------------------------------------------

def connection_create(*, user, name, base_url, api_key="", extra_headers=None, timeout=None, enabled=True,
                      shared=False, trusted=False) -> Saved:
    """Save a new connection owned by ``user`` (``shared``: by nobody, for everyone; ``trusted``:
    may reach any address; both administrators only) after checking it and fetching its models:
    the check's failure is :attr:`Saved.warning`, and nothing is saved unless the whole call
    succeeds. Raises InvalidInput (a field is wrong, the name is taken, the address is refused:
    :mod:`connections.guard`) and Forbidden (``shared``/``trusted`` without being an administrator)."""
    if (shared or trusted) and not is_admin(user):
        raise Forbidden("Only an administrator can share a connection or mark it trusted.")
    connection = Connection(
        owner=None if shared else user, name=_clean_name(name), base_url=clean_base_url(base_url),
        api_key=clean_api_key(api_key), timeout=clean_timeout(timeout), enabled=bool(enabled),
        trusted=bool(trusted),
    )
    headers = clean_headers(extra_headers)
    connection.extra_headers = json.dumps(headers) if headers else ""
    _full_clean(connection)
    _check_address(connection)
    check = _probe(connection)
    with transaction.atomic():
        _insert_or_update(connection)
        _store_probe(connection, check)
    return Saved(connection, check)


UPDATABLE = ("name", "base_url", "api_key", "extra_headers", "timeout", "enabled", "shared", "trusted")


def connection_update(*, user, connection: Connection, changes: dict) -> Saved:
    """Change the fields given in ``changes`` (absent or None: unchanged; ``api_key: ""`` removes
    the key, ``extra_headers: {}`` the headers). The default connection's URL and key come from
    the environment and cannot be changed here. When the URL, key, headers, ``shared`` or
    ``trusted`` change, the address is checked (:mod:`connections.guard`) and the endpoint checked
    again. Raises InvalidInput and Forbidden (``shared``/``trusted`` by a non-administrator)."""
    changes = _allowed_changes(user, connection, changes)
    reach = {"base_url", "api_key", "extra_headers", "trusted", "shared"} & set(changes)
    _apply_changes(user, connection, changes)
    _full_clean(connection)
    if reach:
        _check_address(connection)
    check = _probe(connection) if reach else None
    with transaction.atomic():
        _insert_or_update(connection)
        if check is not None:
            _store_probe(connection, check)
    return Saved(connection, check)


def _allowed_changes(user, connection: Connection, changes: dict) -> dict:
    """``changes`` without None values and without ``shared``/``trusted`` equal to what they are;
    raises InvalidInput (an unknown field, the default connection's URL, key or sharing) and
    Forbidden (``shared``/``trusted`` changed by a non-administrator)."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes.get("shared") is False and connection.from_environment:
        raise InvalidInput("The default connection is always shared.")
    current = {"shared": connection.is_shared, "trusted": connection.trusted}
    changes = {k: v for k, v in changes.items() if not (k in current and bool(v) == current[k])}
    if connection.from_environment and {"base_url", "api_key"} & set(changes):
        raise InvalidInput("The default connection's URL and key come from OPENAI_BASE_URL and OPENAI_API_KEY "
                           "(set them in the environment).")
    if "shared" in changes and not is_admin(user):
        raise Forbidden("Only an administrator can share a connection or stop sharing it.")
    if "trusted" in changes and not is_admin(user):
        raise Forbidden("Only an administrator can mark a connection trusted.")
    return changes


def _apply_changes(user, connection: Connection, changes: dict) -> None:
    """Set the cleaned ``changes`` on ``connection`` (not saved); raises InvalidInput for a bad value."""
    for field, clean in (("name", _clean_name), ("base_url", clean_base_url), ("api_key", clean_api_key),
                         ("timeout", clean_timeout)):
        if field in changes:
            setattr(connection, field, clean(changes[field]))
    if "extra_headers" in changes:
        headers = clean_headers(changes["extra_headers"])
        connection.extra_headers = json.dumps(headers) if headers else ""
    for flag in ("enabled", "trusted"):
        if flag in changes:
            setattr(connection, flag, bool(changes[flag]))
    if "shared" in changes:
        connection.owner = None if changes["shared"] else user
    connection.updated_at = timezone.now()


@transaction.atomic
def connection_delete(*, connection: Connection) -> Connection:
    """Delete a connection: it disappears from lists and pickers; agents and runs that name it fail
    with its name until given another. Raises Conflict for the default connection (disable it instead)."""
    if connection.from_environment:
        raise Conflict("The default connection comes from the environment; disable it instead.")
    connection.deleted_at = timezone.now()
    connection.save(update_fields=["deleted_at"])
    return connection


def _probe_timeout(connection: Connection) -> float:
    return min(connection.read_timeout, settings.ARBOR_CONNECTION_CHECK_SECONDS)


def _record_health(connection: Connection, check: Probe) -> None:
    connection.health, connection.health_latency_ms = check.health, check.latency_ms
    connection.health_message, connection.health_checked_at = check.message, timezone.now()
    connection.save(update_fields=["health", "health_latency_ms", "health_message", "health_checked_at"])


def _unexpected(connection: Connection) -> Probe:
    log.warning("The check of the connection %s failed", connection.pk, exc_info=True)
    return Probe(Health.UNREACHABLE, None, f"Could not reach {connection.shown_url}.")


def _probe(connection: Connection) -> Probe:
    """The model list of ``connection``'s endpoint; never raises (anything unexpected is "unreachable")."""
    try:
        return probe(connection.endpoint(), timeout=_probe_timeout(connection))
    except Exception:
        return _unexpected(connection)


def _model_to_try(connection: Connection, listed: list[dict]) -> str | None:
    """The model the health check asks: the default connection's ``ARBOR_MODEL`` when listed, else
    the first listed model, else the first model added by hand; None when there is none."""
    names = [m["id"] for m in listed]
    if connection.from_environment and settings.ARBOR_MODEL in names:
        return settings.ARBOR_MODEL
    if names:
        return names[0]
    by_hand = ConnectionModel.objects.filter(connection=connection).order_by("name").values_list("name", flat=True)
    return next(iter(by_hand), None)


def connection_check(*, connection: Connection) -> Probe:
    """Health check: ``GET /models``, then a one-token chat completion of one model (see
    :func:`_model_to_try`), so "ok" means the endpoint answers, not only that it lists. The
    outcome (the completion's health and latency, both messages) is stored and returned, and the
    models it lists are stored as :func:`connection_refresh_models` stores them, so the connection's
    model count and the chat's picker agree with "N models listed"."""
    endpoint, timeout = connection.endpoint(), _probe_timeout(connection)
    listing = _probe(connection)
    model = _model_to_try(connection, listing.models or [])
    if listing.health == Health.UNREACHABLE:
        check = listing
    elif model is None:
        check = Probe(Health.ERROR, listing.latency_ms, f"{listing.message} No model to try a completion with.")
    else:
        try:
            answer = answers(endpoint, model, timeout=timeout)
        except Exception:
            answer = _unexpected(connection)
        check = Probe(answer.health, answer.latency_ms, f"{listing.message} {answer.message}", listing.models)
    with transaction.atomic():
        _record_health(connection, check)
        if listing.models is not None:
            _store_listed(connection, listing.models)
    return check


def connection_refresh_models(*, connection: Connection) -> Probe:
    """Fetch the endpoint's model list (a health check too). Listed models are added or marked
    listed (with the context window the endpoint reports); models no longer listed stay, marked
    unlisted, with their settings. When the endpoint gives no list, ``models_error`` says why."""
    check = _probe(connection)
    with transaction.atomic():
        _store_probe(connection, check)
    return check


def _store_probe(connection: Connection, check: Probe) -> None:
    """Store what the probe found: health, and the model list (or ``models_error``); inside a transaction."""
    _record_health(connection, check)
    if check.models is None:
        connection.models_error = check.message
        connection.save(update_fields=["models_error"])
        return
    _store_listed(connection, check.models)


def _store_listed(connection: Connection, models: list[dict]) -> None:
    """Store an endpoint's model list (``[{"id", "context_window"}]``): listed models are added or
    marked listed (with the context window reported); models no longer listed stay, marked unlisted."""
    names = {m["id"]: m["context_window"] for m in models}
    existing = {m.name: m for m in ConnectionModel.objects.select_for_update().filter(connection=connection)}
    changed = []
    for model in existing.values():
        listed = model.name in names
        window = names[model.name] or model.listed_context_window if listed else model.listed_context_window
        if (listed, window) != (model.listed, model.listed_context_window):
            model.listed, model.listed_context_window = listed, window
            changed.append(model)
    ConnectionModel.objects.bulk_update(changed, ["listed", "listed_context_window"], batch_size=500)
    ConnectionModel.objects.bulk_create([
        ConnectionModel(connection=connection, name=name, listed=True, listed_context_window=window)
        for name, window in names.items() if name not in existing
    ])
    connection.models_refreshed_at, connection.models_error = timezone.now(), ""
    connection.save(update_fields=["models_refreshed_at", "models_error"])


# --- models ----------------------------------------------------------------------------------------

def _clean_window(value) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput("context_window must be a whole number of tokens")
    try:
        tokens = int(value)
    except ValueError:
        raise InvalidInput("context_window must be a whole number of tokens") from None
    if not 1 <= tokens <= MAX_WINDOW:
        raise InvalidInput(f"context_window must be between 1 and {MAX_WINDOW} tokens")
    return tokens


def _clean_price(value, field: str) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{field} must be a number (USD per 1M tokens)")
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} must be a number (USD per 1M tokens)") from None
    if not 0 <= amount <= MAX_PRICE:  # NaN fails this too
        raise InvalidInput(f"{field} must be between 0 and {MAX_PRICE:g} USD per 1M tokens")
    return amount


MODEL_FIELDS = ("context_window", "prompt_price", "completion_price")


def _apply_model_fields(model: ConnectionModel, fields: dict) -> None:
    unknown = set(fields) - set(MODEL_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    if "context_window" in fields:
        model.context_window = _clean_window(fields["context_window"])
    for side in ("prompt_price", "completion_price"):
        if side in fields:
            setattr(model, side, _clean_price(fields[side], side))


@transaction.atomic
def model_add(*, connection: Connection, name, **fields) -> ConnectionModel:
    """Add a model by hand (for endpoints that list none); ``fields``: context_window, prompt_price,
    completion_price (empty: the settings' defaults). Raises InvalidInput and Conflict (already there)."""
    name = clean_text(name, field="model", max_length=200)
    if ConnectionModel.objects.filter(connection=connection, name=name).exists():
        raise Conflict(f"The connection “{connection.name}” already has a model named {name!r}.")
    model = ConnectionModel(connection=connection, name=name, added_by_hand=True)
    _apply_model_fields(model, fields)
    model.save()
    return model


@transaction.atomic
def model_update(*, model: ConnectionModel, fields: dict) -> ConnectionModel:
    """Set a model's context window and prices (``""``/None: back to the settings' defaults)."""
    _apply_model_fields(model, fields)
    model.save(update_fields=[f for f in MODEL_FIELDS if f in fields] or None)
    return model


@transaction.atomic
def model_delete(*, model: ConnectionModel) -> None:
    """Remove a model from the list (a listed one comes back with the next refresh)."""
    model.delete()
