"""Reading settings from the environment through one helper.

``env(name)`` without a default raises :class:`ImproperlyConfigured` when the variable is missing,
so a required value that is absent fails at start-up with its name, not later with a ``KeyError``
(the pattern of cookiecutter-django's ``config/settings``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_REQUIRED = object()


def _to_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def env(name: str, default: Any = _REQUIRED, cast: Callable[[str], Any] = str) -> Any:
    """Return environment variable ``name`` converted by ``cast``.

    ``cast`` may be ``str``, ``int``, ``float``, ``bool`` (accepts 1/0, true/false, yes/no, on/off)
    or any one-argument callable. An empty string counts as set. The default is returned as is,
    without ``cast``.

    Raises ImproperlyConfigured when the variable is missing and no default is given, or when it
    cannot be converted.
    """
    raw = os.environ.get(name)
    if raw is None:
        if default is _REQUIRED:
            raise ImproperlyConfigured(f"Set the {name} environment variable.")
        return default
    converter = _to_bool if cast is bool else cast
    try:
        return converter(raw)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not valid: {exc}") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """A comma-separated environment variable as a list of non-empty, stripped strings."""
    raw = env(name, default=None)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]
