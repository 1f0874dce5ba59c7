"""Masking secrets in anything Arbor stores or shows about a request to a model endpoint."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# A key (of a dict, a header or a query parameter) whose name, lower-cased with "-" read as "_",
# contains one of these holds a secret.
SECRET_NAMES = ("api_key", "apikey", "authorization", "secret", "token", "password")


def is_secret_name(name: str) -> bool:
    """True for names like ``api_key``, ``X-Api-Key``, ``Authorization``, ``access_token`` (not
    ``max_tokens`` or any other ``*_tokens`` count)."""
    key = str(name).lower().replace("-", "_")
    if key == "max_tokens" or key.endswith("_tokens"):
        return False
    return any(s in key for s in SECRET_NAMES)


def mask_url(url: str) -> str:
    """``url`` with a password in it (``https://user:pw@host``) and secret-named query parameters
    (``?api-key=...``) replaced by ``***``; anything that does not parse is returned as it is."""
    if not isinstance(url, str) or not url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:{MASK}@{netloc.rsplit('@', 1)[1]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return url


def mask_secrets(value):
    """A copy of a request description with API keys and authorization headers masked (any key
    :func:`is_secret_name` names), and passwords in ``base_url`` values masked (:func:`mask_url`)."""
    if isinstance(value, dict):
        return {
            k: (MASK if is_secret_name(k) else mask_url(v) if k == "base_url" else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def scrub(text: str, secrets) -> str:
    """``text`` with every occurrence of each of ``secrets`` (4 characters or longer) replaced by
    ``***``: for messages built from what an endpoint answered, which may echo a key back."""
    if not isinstance(text, str):
        return text
    for secret in sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
