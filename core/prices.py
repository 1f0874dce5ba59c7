"""Model prices: ``settings.ARBOR_MODEL_PRICES``, parsed in one place for every cost shown.

The setting maps a model name to its price in **USD per 1 million tokens** (``PER_TOKENS``), as
either ``{"prompt": 2.5, "completion": 10}`` or ``[2.5, 10]`` (prompt, completion). A dict may
leave a side out (0). Entries that are neither, or hold a value that is not a finite number ≥ 0
(a bool, a non-numeric string, NaN, Infinity), are ignored: that model has no price, so no cost is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings

PER_TOKENS = 1_000_000  # prices are per this many tokens


@dataclass(frozen=True)
class Price:
    """USD per :data:`PER_TOKENS` prompt (input) and completion (output) tokens."""

    prompt: float
    completion: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for ``prompt_tokens`` in and ``completion_tokens`` out."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / PER_TOKENS


def _amount(value) -> float | None:
    """A finite number ≥ 0 (a numeric string too), else None; a bool is not a number here."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        amount = float(value)
    except ValueError:
        return None
    return amount if math.isfinite(amount) and amount >= 0 else None


def parse_price(entry) -> Price | None:
    """One ``ARBOR_MODEL_PRICES`` value as a :class:`Price`, or None when it is not a valid price:
    a non-empty dict with ``prompt``/``completion`` (a missing or null side is 0), or a list or
    tuple ``[prompt, completion]``."""
    if isinstance(entry, dict) and entry:
        sides = (entry.get("prompt") or 0, entry.get("completion") or 0)
    elif isinstance(entry, (list, tuple)) and len(entry) == 2:
        sides = tuple(entry)
    else:
        return None
    prompt, completion = (_amount(v) for v in sides)
    if prompt is None or completion is None:
        return None
    return Price(prompt=prompt, completion=completion)


def model_prices() -> dict[str, Price]:
    """Every valid price of ``settings.ARBOR_MODEL_PRICES`` by model name (read at each call)."""
    configured = getattr(settings, "ARBOR_MODEL_PRICES", None) or {}
    prices = {model: parse_price(entry) for model, entry in configured.items()}
    return {model: price for model, price in prices.items() if price is not None}


def price_for(model: str) -> Price | None:
    """The price of ``model``, or None when it has none (or an invalid one)."""
    return parse_price((getattr(settings, "ARBOR_MODEL_PRICES", None) or {}).get(model))


def run_cost(model: str, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
    """USD for one model call's usage, or None when the model has no price or a count is unknown."""
    price = price_for(model)
    if price is None or prompt_tokens is None or completion_tokens is None:
        return None
    return price.cost(prompt_tokens, completion_tokens)
