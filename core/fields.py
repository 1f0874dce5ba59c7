"""Encryption at rest for message text (:class:`EncryptedTextField`) and secrets (:class:`SecretTextField`).

Off by default. Set ``ARBOR_MEMORY_ENCRYPTION_KEYS`` to one or more Fernet keys, comma-separated
(make one with ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``).
The first key encrypts; every key decrypts (``cryptography``'s MultiFernet: AES-128-CBC with
HMAC-SHA256, https://github.com/fernet/spec). To rotate: put the new key first, keep the old ones
after it, run ``manage.py rotate_memory_keys`` (re-encrypts every row with the first key), then
drop the old keys.

Stored form: ``enc:v1:<Fernet token>``; anything without that prefix is plaintext (rows written
before encryption was turned on), read as it is and encrypted by the next ``rotate_memory_keys``.
What stops working while it is on: anything that looks inside the text *in the database* —
``content__icontains`` filters, PostgreSQL full-text search, ``ORDER BY content``. Arbor's keyword
search falls back to Python over decrypted text where it can, and says so where it cannot.

Secrets (a model connection's API key and extra headers) use :class:`SecretTextField`: always
encrypted, also when ``ARBOR_MEMORY_ENCRYPTION_KEYS`` is unset. Then the key is derived from
``DJANGO_SECRET_KEY`` (SHA-256 of a label and the secret key, as a Fernet key; each of
``SECRET_KEY_FALLBACKS`` still decrypts), so the column never holds the plaintext; changing the
secret key without keeping the old one in ``SECRET_KEY_FALLBACKS`` makes stored secrets unreadable
(enter them again). With ``ARBOR_MEMORY_ENCRYPTION_KEYS`` set, its first key encrypts secrets too and
``rotate_memory_keys`` moves secrets written under the derived key onto it.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "enc:v1:"


class DecryptionError(Exception):
    """Stored ciphertext that none of the configured keys opens (a key was dropped too early)."""


def configured_keys() -> tuple[str, ...]:
    keys = getattr(settings, "ARBOR_MEMORY_ENCRYPTION_KEYS", ()) or ()
    if isinstance(keys, str):
        keys = keys.split(",")
    return tuple(k.strip() for k in keys if k and k.strip())


@lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "ARBOR_MEMORY_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64-encoded bytes)."
        ) from exc


def _derived_key(secret: str) -> str:
    digest = hashlib.sha256(b"arbor secrets v1\x00" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def secret_keys() -> tuple[str, ...]:
    """The keys of :class:`SecretTextField`: ``ARBOR_MEMORY_ENCRYPTION_KEYS`` (the first one encrypts),
    then keys derived from ``SECRET_KEY`` and each of ``SECRET_KEY_FALLBACKS`` (the first of those
    encrypts when no key is configured)."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())]
    return configured_keys() + tuple(_derived_key(str(s)) for s in secrets if s)


def encryption_enabled() -> bool:
    """True when message text is written encrypted (``ARBOR_MEMORY_ENCRYPTION_KEYS`` is set)."""
    return bool(configured_keys())


def is_encrypted(value: str | None) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def encrypt(text: str, keys: tuple[str, ...] | None = None) -> str:
    """``enc:v1:<token>`` with the first of ``keys`` (default: the configured keys); ``text``
    unchanged when there is no key."""
    keys = configured_keys() if keys is None else keys
    if not keys or not text or is_encrypted(text):
        return text  # "" stays "": only emptiness shows, and ``content=""`` lookups keep working
    return PREFIX + _multifernet(keys).encrypt(text.encode()).decode()


def decrypt(value: str, keys: tuple[str, ...] | None = None) -> str:
    """The plaintext of a stored value (plaintext passes through). Raises DecryptionError when it
    is ciphertext and none of ``keys`` (default: the configured keys) opens it."""
    if not is_encrypted(value):
        return value
    keys = configured_keys() if keys is None else keys
    if not keys:
        raise DecryptionError("This text is encrypted and ARBOR_MEMORY_ENCRYPTION_KEYS is not set.")
    try:
        return _multifernet(keys).decrypt(value[len(PREFIX):].encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("None of the keys in ARBOR_MEMORY_ENCRYPTION_KEYS opens this text.") from exc


def rotate(value: str, keys: tuple[str, ...] | None = None) -> str:
    """The value re-encrypted with the first key (plaintext gets encrypted); unchanged when off."""
    return encrypt(decrypt(value, keys), keys)


class EncryptedTextField(models.TextField):
    """A TextField stored encrypted when ``ARBOR_MEMORY_ENCRYPTION_KEYS`` is set (see the module doc).

    Python code sees plaintext both ways; the column (a plain text column, no schema change)
    holds ``enc:v1:...``. Lookups on its content in SQL see ciphertext and so find nothing.
    """

    def keys(self) -> tuple[str, ...]:
        """The keys this field encrypts with (the first) and decrypts with (all)."""
        return configured_keys()

    def from_db_value(self, value, expression, connection):
        if value is None or not value.startswith(PREFIX):
            return value  # plaintext, every row while encryption is off: no further call
        return decrypt(value, self.keys())

    def to_python(self, value):
        value = super().to_python(value)
        return decrypt(value, self.keys()) if is_encrypted(value) else value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return encrypt(value, self.keys()) if value is not None else value

    def rotate(self, value: str) -> str:
        """``value`` (as stored or as plaintext) encrypted with this field's first key."""
        return rotate(value, self.keys())


class SecretTextField(EncryptedTextField):
    """An :class:`EncryptedTextField` that is never stored as plaintext: without
    ``ARBOR_MEMORY_ENCRYPTION_KEYS`` it encrypts with a key derived from ``SECRET_KEY``
    (:func:`secret_keys`). For API keys and credentials; "" stays "" (no secret)."""

    def keys(self) -> tuple[str, ...]:
        return secret_keys()
