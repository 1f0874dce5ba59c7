"""Masking secrets in anything Arbor stores or shows about a request to a model endpoint."""

from __future__ import annotations


def mask_secrets(value):
    """A copy of a request description with API keys and authorization headers masked."""
    if isinstance(value, dict):
        return {
            k: ("***" if any(s in k.lower() for s in ("api_key", "authorization", "secret", "token"))
                and k != "max_tokens" and not k.endswith("_tokens") else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value
