"""Masking secrets in anything Arbor stores or shows about a request to a model endpoint.

Credentials are masked wherever they appear in text (:func:`scrub_credentials`, applied by
:func:`scrub` and by the log filter :class:`ScrubCredentials`): a password in a URL
(``http://user:pw@host`` → ``http://user:***@host``), an ``Authorization`` or
``Proxy-Authorization`` value in any quoting (``Authorization: Basic dXNlcjpwdw==``,
``'authorization': 'Bearer sk-…'``, ``"Proxy-Authorization"="Digest …"``), and a ``Basic`` or
``Bearer`` credential on its own (``Basic dXNlcjpwdw==`` → ``Basic ***``). The forms are those of
RFC 9110 §11 (credentials: ``auth-scheme token68``) and RFC 3986 §3.2.1 (userinfo).
"""

from __future__ import annotations

import logging
import re
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


def without_userinfo(url: str) -> str:
    """``url`` without a user name and password (``http://u:p@h:1/v1`` → ``http://h:1/v1``)."""
    if not isinstance(url, str) or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[1], parts.path, parts.query, parts.fragment))


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


# userinfo with a password: scheme://user:password@ (the password up to the last "@" before the host).
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@'\"<>]*):[^\s/'\"<>]*@")
# An Authorization / Proxy-Authorization header or field and its value, in any quoting:
# "Authorization: Basic x", 'authorization': 'Bearer x', Proxy-Authorization=Digest a="b", c="d".
_AUTH_PARAM = r"[a-z0-9_-]+=(?:\"[^\"]*\"|[^\s,;'\"]+)"
_AUTH_FIELD = re.compile(
    r"(?i)((?:proxy[-_])?authorization['\"]?\s*[:=]\s*['\"]?)(?:[a-z][a-z0-9_-]*\s+)?"
    rf"(?:{_AUTH_PARAM}|[^\s'\",;}}\]]+)(?:\s*,\s*{_AUTH_PARAM})*")
# A credential on its own: a scheme and a token68 (RFC 9110 §11.4).
# (One that looks like a credential: a digit, "+", "/" or "=" in it, or a capital after a small letter,
# so that prose such as "Basic authentication" is left alone.)
_SCHEME_TOKEN = re.compile(r"(?i)\b(Basic|Bearer|Digest|Negotiate|NTLM)\s+"
                           r"(?=[A-Za-z0-9._~+/=-]*(?:[0-9+/=]|(?-i:[a-z][A-Z])))[A-Za-z0-9._~+/=-]{4,}")


def scrub_credentials(text: str) -> str:
    """``text`` with URL passwords, ``Authorization``/``Proxy-Authorization`` values and
    ``Basic``/``Bearer`` credentials masked (``***``), whatever they say."""
    if not isinstance(text, str) or not text:
        return text
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _AUTH_FIELD.sub(rf"\g<1>{MASK}", text)
    return _SCHEME_TOKEN.sub(rf"\1 {MASK}", text)


def scrub(text: str, secrets) -> str:
    """``text`` with every occurrence of each of ``secrets`` (4 characters or longer) replaced by
    ``***``, and every credential :func:`scrub_credentials` finds masked: for messages built from
    what an endpoint answered, which may echo a key or a password back."""
    if not isinstance(text, str):
        return text
    for secret in sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return scrub_credentials(text)


class ScrubCredentials(logging.Filter):
    """A log filter (on the console handler, ``LOGGING`` in :mod:`config.settings.base`): the
    message and any traceback of each record with :func:`scrub_credentials` applied."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = scrub_credentials(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub_credentials(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub_credentials(record.exc_text)
        return True
