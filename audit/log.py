"""Writing the audit log: the request context, :func:`record` and the :func:`audited` decorator.

:class:`audit.middleware.AuditContextMiddleware` puts the current request in a context variable, so
code deep in a service or a signal receiver knows who acts, from which IP and user agent, without
being passed the request. Outside a request (Celery workers, management commands) the actor is empty
(the system) unless given.

Two ways actions reach the log:

* **receivers** on ``post_save``/``post_delete``: each app registers its own models with
  :func:`track_changes` from its ``AppConfig.ready()`` (sessions, agents, API tokens, imports), and
  :mod:`audit.receivers` covers Django's own: users, auth signals (logins, logouts, failed logins)
  and the admin's ``LogEntry`` (every admin change);
* **@audited("run.regenerate")** on service functions whose writes are ``UPDATE`` statements (no
  ``post_save``) or whose meaning a save does not tell (a new run may be a start, a regenerate or
  an edit). While an audited function runs, nested audited functions and the save receivers stay
  quiet, so one action is one row.
"""

from __future__ import annotations

import contextvars
import functools
import ipaddress
import logging
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.signals import post_delete, post_save

log = logging.getLogger(__name__)

_request: contextvars.ContextVar = contextvars.ContextVar("arbor_audit_request", default=None)
_operation: contextvars.ContextVar = contextvars.ContextVar("arbor_audit_operation", default=None)


def set_request(request):
    """Make ``request`` the current request for audit purposes; returns a token for :func:`reset_request`."""
    return _request.set(request)


def reset_request(token) -> None:
    _request.reset(token)


def current_request():
    return _request.get()


def in_operation() -> bool:
    """True while an :func:`audited` function runs (its own row describes what happens inside)."""
    return _operation.get() is not None


@contextmanager
def operation(action: str) -> Iterator[None]:
    """Mark the block as part of the audited action ``action`` (nested records are suppressed)."""
    token = _operation.set(action)
    try:
        yield
    finally:
        _operation.reset(token)


def client_ip(request) -> str | None:
    """The client's IP: ``REMOTE_ADDR``, or with ``ARBOR_TRUSTED_PROXIES = n > 0`` the n-th address
    from the right of ``X-Forwarded-For`` (the one the outermost trusted proxy saw)."""
    candidate = request.META.get("REMOTE_ADDR") or None
    hops = getattr(settings, "ARBOR_TRUSTED_PROXIES", 0)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if hops > 0 and forwarded:
        parts = [p.strip() for p in forwarded.split(",") if p.strip()]
        if parts:
            candidate = parts[-hops] if len(parts) >= hops else parts[0]
    try:
        return str(ipaddress.ip_address(candidate)) if candidate else None
    except ValueError:
        return None


def _actor_of(request):
    user = getattr(request, "user", None) if request is not None else None
    if user is not None and getattr(user, "is_authenticated", False):
        return user
    return None


def describe(obj: Any) -> tuple[str, str, str]:
    """``(target_type, target_id, target_repr)`` of a model instance (empty strings for None)."""
    if obj is None:
        return "", "", ""
    if isinstance(obj, models.Model):
        meta = obj._meta
        try:
            text = str(obj)
        except Exception:  # a broken __str__ must not lose the audit row
            text = ""
        return f"{meta.app_label}.{meta.model_name}", str(obj.pk), text[:200]
    return type(obj).__name__, str(obj), ""


def _jsonable(value):
    if isinstance(value, models.Model):
        return {"type": describe(value)[0], "id": str(value.pk)}
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def record(
    action: str,
    *,
    target: Any = None,
    details: dict | None = None,
    actor=None,
    request=None,
    target_type: str | None = None,
    target_id: str | None = None,
):
    """Append one row to the audit log and return it.

    ``target``: the model instance acted on (or give ``target_type``/``target_id``). ``actor`` and
    ``request`` default to the current request's user and the request itself. The row is written in
    the caller's transaction, so an action that rolls back leaves no audit row either.
    """
    from .models import AuditLog  # lazy: apps import audit.log from their apps.py, before models load

    request = request if request is not None else current_request()
    actor = actor if actor is not None else _actor_of(request)
    ttype, tid, trepr = describe(target)
    meta = getattr(request, "META", {}) if request is not None else {}
    return AuditLog.objects.create(
        actor=actor,
        actor_username=(actor.get_username() if actor is not None else "")[:150],
        action=action[:64],
        target_type=(target_type if target_type is not None else ttype)[:100],
        target_id=str(target_id if target_id is not None else tid)[:64],
        target_repr=trepr,
        ip=client_ip(request) if request is not None else None,
        user_agent=meta.get("HTTP_USER_AGENT", "")[:500],
        method=(getattr(request, "method", "") or "")[:10],
        path=(getattr(request, "path", "") or "")[:500],
        details=_jsonable(details or {}),
    )


def audited(action: str, *, details: Callable[[dict, Any], dict] | None = None):
    """Decorate a keyword-only service function: after it returns, record ``action`` with the
    returned object as the target and the model-instance and id keyword arguments as details
    (``run`` → ``run_id``), plus ``details(kwargs, result)`` when given.

    Inside it, nested audited functions and save receivers record nothing. Failures (exceptions)
    are not recorded: nothing changed.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if in_operation():
                return fn(*args, **kwargs)
            with operation(action):
                result = fn(*args, **kwargs)
            info: dict = {}
            for name, value in kwargs.items():
                if isinstance(value, models.Model):
                    info[f"{name}_id"] = str(value.pk)
            if details is not None:
                info.update(details(kwargs, result))
            record(action, target=result if isinstance(result, models.Model) else None, details=info)
            return result

        return wrapper

    return decorate


# ``(action suffix, details)``: what one save or delete of a tracked model records.
Event = tuple[str, dict | None]
# Saves touching only these fields are bookkeeping, not a change of state anyone made.
BOOKKEEPING_FIELDS = frozenset({"last_used_at", "last_login"})


def _default_create(instance) -> Event:
    return "create", None


def _default_change(instance, fields: frozenset[str]) -> list[Event]:
    return [("change", None)]


def _default_delete(instance) -> Event:
    return "delete", None


def track_changes(
    model: type[models.Model],
    *,
    action_prefix: str,
    create: Callable[[Any], Event | None] | None = _default_create,
    change: Callable[[Any, frozenset[str]], list[Event]] | None = _default_change,
    delete: Callable[[Any], Event | None] | None = _default_delete,
    inside_operations: Collection[str] = (),
) -> None:
    """Audit saves and deletes of ``model``: each records ``f"{action_prefix}.{suffix}"`` with the
    instance as the target. Call it from the owning app's ``AppConfig.ready()``.

    ``create(instance)`` and ``delete(instance)`` return one ``(suffix, details)`` or None (nothing
    recorded); ``change(instance, update_fields)`` returns a list of them (``update_fields`` is
    empty for a full save). The defaults record ``create`` / ``change`` / ``delete`` without
    details; pass None to leave that kind of event unaudited. Fixture loading (``raw``) is never
    audited, nor updates of only :data:`BOOKKEEPING_FIELDS`. Inside an :func:`audited` operation
    nothing is recorded except the kinds named in ``inside_operations`` (``"create"``,
    ``"change"``, ``"delete"``). Connecting the same model and prefix twice is harmless.
    """
    uid = f"audit:{model._meta.label_lower}:{action_prefix}"

    def emit(kind: str, instance, events) -> None:
        if in_operation() and kind not in inside_operations:
            return
        for suffix, details in events:
            record(f"{action_prefix}.{suffix}", target=instance, details=details)

    def saved(sender, instance, created, raw=False, update_fields=None, **kwargs):
        if raw:
            return
        if created:
            event = create(instance) if create is not None else None
            emit("create", instance, [event] if event else [])
            return
        fields = frozenset(update_fields or ())
        if change is not None and not (fields and fields <= BOOKKEEPING_FIELDS):
            emit("change", instance, change(instance, fields))

    def deleted(sender, instance, **kwargs):
        event = delete(instance) if delete is not None else None
        emit("delete", instance, [event] if event else [])

    if create is not None or change is not None:
        post_save.connect(saved, sender=model, weak=False, dispatch_uid=f"{uid}.saved")
    if delete is not None:
        post_delete.connect(deleted, sender=model, weak=False, dispatch_uid=f"{uid}.deleted")
