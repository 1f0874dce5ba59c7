"""Writing the audit log: the request context, :func:`record` and the :func:`audited` decorator.

:class:`audit.middleware.AuditContextMiddleware` puts the current request in a context variable, so
code deep in a service or a signal receiver knows who acts, from which IP and user agent, without
being passed the request. Outside a request (Celery workers, management commands) the actor is empty
(the system) unless given.

Two ways actions reach the log:

* **receivers** (:mod:`audit.receivers`) on ``post_save``/``post_delete`` of our models, Django's
  auth signals and the admin's ``LogEntry``: sessions created/renamed/deleted/restored, agents, API
  tokens, logins, logouts, failed logins, every admin change;
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import models

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
        except Exception:  # noqa: BLE001 - a broken __str__ must not lose the audit row
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
    from .models import AuditLog

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
