"""Run parameters: the OpenAI chat-completion parameters a run, an agent or a variant may set,
and the one validator of their types and ranges (:func:`clean_params`)."""

from __future__ import annotations

import math

from .errors import InvalidInput

# Numeric parameters: (type, lowest, highest), both bounds included. An ``int`` parameter takes an
# integer (or an integral float such as 256.0, from JSON); a ``float`` one any finite number.
PARAM_RANGES: dict[str, tuple[type, float, float]] = {
    "temperature": (float, 0.0, 2.0),
    "top_p": (float, 0.0, 1.0),
    "max_tokens": (int, 1, 131_072),
    "seed": (int, -(2**31), 2**31 - 1),
    "presence_penalty": (float, -2.0, 2.0),
    "frequency_penalty": (float, -2.0, 2.0),
}
MAX_STOP_SEQUENCES = 4  # ``stop``: one string or a list of at most this many (OpenAI's limit)

ALLOWED_PARAMS = frozenset({*PARAM_RANGES, "stop"})


def model_params(params: dict | None) -> dict:
    """The subset of ``params`` that is sent to the model (other keys, e.g. ``system``, are Arbor's)."""
    return {k: v for k, v in (params or {}).items() if k in ALLOWED_PARAMS}


def _number(key: str, value) -> int | float:
    kind, low, high = PARAM_RANGES[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{key} must be a number")
    if not math.isfinite(value):
        raise InvalidInput(f"{key} must be a finite number")
    if kind is int:
        if value != int(value):
            raise InvalidInput(f"{key} must be a whole number")
        value = int(value)
    else:
        value = float(value)
    if not low <= value <= high:
        raise InvalidInput(f"{key} must be between {low:g} and {high:g}")
    return value


def _stop(value) -> str | list[str]:
    if isinstance(value, str):
        return value
    if (not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_STOP_SEQUENCES
            or not all(isinstance(s, str) and s for s in value)):
        raise InvalidInput(f"stop must be a string or a list of 1 to {MAX_STOP_SEQUENCES} non-empty strings")
    return list(value)


def clean_params(params: dict | None) -> dict:
    """Validated model parameters: ``{key: value}`` with keys of :data:`ALLOWED_PARAMS`.

    Numbers are checked against :data:`PARAM_RANGES` (ints come back as ``int``, floats as
    ``float``); ``stop`` is a string or a list of strings. Keys whose value is None or ``""`` are
    dropped (a blank form field). No defaults are added.

    Raises InvalidInput naming the field: unknown keys (all of them, ``"unknown parameters: a, b"``),
    a bool or a string where a number is expected, NaN or Infinity, a fraction for an integer
    parameter, a value out of range, a malformed ``stop``, ``params`` that is not a dict.
    """
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput("params must be an object")
    given = {k: v for k, v in params.items() if v is not None and v != ""}
    unknown = set(given) - ALLOWED_PARAMS
    if unknown:
        raise InvalidInput(f"unknown parameters: {', '.join(sorted(map(str, unknown)))}")
    return {key: _stop(value) if key == "stop" else _number(key, value) for key, value in given.items()}
