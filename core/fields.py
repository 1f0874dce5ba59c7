"""Encryption at rest for message text: :class:`EncryptedTextField`.

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
"""

from __future__ import annotations

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


def encryption_enabled() -> bool:
    """True when message text is written encrypted (``ARBOR_MEMORY_ENCRYPTION_KEYS`` is set)."""
    return bool(configured_keys())


def is_encrypted(value: str | None) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def encrypt(text: str) -> str:
    """``enc:v1:<token>`` with the first configured key; ``text`` unchanged when encryption is off."""
    keys = configured_keys()
    if not keys or not text or is_encrypted(text):
        return text  # "" stays "": only emptiness shows, and ``content=""`` lookups keep working
    return PREFIX + _multifernet(keys).encrypt(text.encode()).decode()


def decrypt(value: str) -> str:
    """The plaintext of a stored value (plaintext passes through). Raises DecryptionError when it
    is ciphertext and no configured key opens it."""
    if not is_encrypted(value):
        return value
    keys = configured_keys()
    if not keys:
        raise DecryptionError("This text is encrypted and ARBOR_MEMORY_ENCRYPTION_KEYS is not set.")
    try:
        return _multifernet(keys).decrypt(value[len(PREFIX):].encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("None of the keys in ARBOR_MEMORY_ENCRYPTION_KEYS opens this text.") from exc


def rotate(value: str) -> str:
    """The value re-encrypted with the first key (plaintext gets encrypted); unchanged when off."""
    return encrypt(decrypt(value))


class EncryptedTextField(models.TextField):
    """A TextField stored encrypted when ``ARBOR_MEMORY_ENCRYPTION_KEYS`` is set (see the module doc).

    Python code sees plaintext both ways; the column (a plain text column, no schema change)
    holds ``enc:v1:...``. Lookups on its content in SQL see ciphertext and so find nothing.
    """

    def from_db_value(self, value, expression, connection):
        if value is None or not value.startswith(PREFIX):
            return value  # plaintext, every row while encryption is off: no further call
        return decrypt(value)

    def to_python(self, value):
        value = super().to_python(value)
        return decrypt(value) if is_encrypted(value) else value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return encrypt(value) if value is not None else value
