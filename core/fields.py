"""Encryption at rest for message text (:class:`EncryptedTextField`) and secrets (:class:`SecretTextField`);
JSON stored compressed (:class:`PackedJSONField`, for the step trace written on every turn).

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
import json
import zlib
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


# Version 1 of PackedJSONField's preset dictionary: strings the stored step requests and responses
# repeat (their keys and usual values). deflate finds matches in it as if it preceded each value.
# Never edit it: values stored with it are read with it. A new dictionary is a new format byte.
PACKED_DICTIONARY_V1 = "".join((
    '{"tool_call_id":"call_","arguments":"{}","name":"","ok":true,"content":"","message_id":',
    '"applied":[{"type":"tool_results","acted":false,"action":"truncate","messages":[],',
    '{"type":"summarize","acted":true,"model":"","shared":false,"summary_chars":,"turns_summarised":',
    '"policy":{"target":0.4,"enabled":true,"threshold":0.8,"strategies":[{"max_chars":4000},',
    '"prompt":"","max_tokens":256,"temperature":0.0,"keep_recent_turns":4}]},"compaction_id":',
    '"tokens_before":,"tokens_after":,"replaced_messages":,"utilisation_before":0.,"utilisation_after":0.',
    '{"compaction":,"utilisation":0.,"counted_with":"estimate","message_count":,"context_window":8192,',
    '"reserved_output":512,"history_messages":,"window_dropped":,"budget_dropped":,"pinned":1,"pin_tokens":',
    '{"characters":,"finish_reason":"stop"}{"characters":,"finish_reason":"length"}"tool_calls":[{"id":"',
    '"tools":[],"tool_choice":"auto","round":0,"stream":true,"connection":"Default","connection_id":1,',
    '"base_url":"http://127.0.0.1:8080/v1","params":{"max_tokens":512,"temperature":0.7},"sha256":"',
    '"context":{"system":"You are a helpful assistant.","summary":{"id":,"version":1},"own_upto":1,',
    '"memory_id":"default","compaction":,"from_depth":,"dropped":[],"replaced":{},"tail":[]},',
    '"context_parts":{"labels":"system:1 summary:1 pin:1 history:2 input:1","totals":{"input":,"primer":4,',
    '"system":12,"history":,"summary":},"not_seen":["Turns 1\u2013 were summarised (summary ): the model ',
    'saw the summary, not the turns."],"message_tokens":"12 190 49 184 49 184 50 183 ',
    '"message_count":,"usable_window":7680,"context_tokens":',
)).encode()
_PLAIN, _DEFLATED_V1 = 0, 1


def pack_json(value, encoder=None) -> bytes:
    """``value`` as :class:`PackedJSONField` stores it: one format byte, then its compact JSON
    (UTF-8) deflated with :data:`PACKED_DICTIONARY_V1` (format 1), or as it is (format 0) when
    deflate would not make it smaller."""
    text = json.dumps(value, cls=encoder, separators=(",", ":"), ensure_ascii=False).encode()
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, PACKED_DICTIONARY_V1)
    deflated = packer.compress(text) + packer.flush()
    return bytes((_DEFLATED_V1,)) + deflated if len(deflated) < len(text) else bytes((_PLAIN,)) + text


def unpack_json(stored: bytes | memoryview, decoder=None):
    """The JSON value of :func:`pack_json`'s bytes. Raises ValueError on an unknown format byte."""
    stored = bytes(stored)
    if stored[0] == _DEFLATED_V1:
        unpacker = zlib.decompressobj(-15, PACKED_DICTIONARY_V1)
        text = unpacker.decompress(stored[1:]) + unpacker.flush()
    elif stored[0] == _PLAIN:
        text = stored[1:]
    else:
        raise ValueError(f"unknown packed JSON format {stored[0]}")
    return json.loads(text, cls=decoder)


class PackedJSONField(models.JSONField):
    """A JSONField stored compressed (:func:`pack_json`) in a binary column (``bytea``, ``BLOB``).

    For JSON written on every turn and read whole (a step's request and response): about a quarter
    of PostgreSQL's ``jsonb`` for a model call's request of ~1 KB, which PostgreSQL itself never
    compresses (it compresses a row's values only when the row exceeds ~2 KB, whatever the
    column's compression or the table's ``toast_tuple_target``). Python code sees the JSON value
    both ways; SQL sees bytes, so key lookups (``request__model``) and ``jsonb`` operators do not
    work on it.
    """

    def get_internal_type(self):
        return "BinaryField"

    def from_db_value(self, value, expression, connection):
        return None if value is None else unpack_json(value, self.decoder)

    def get_db_prep_value(self, value, connection, prepared=False):
        if not prepared:
            value = self.get_prep_value(value)
        return None if value is None else connection.Database.Binary(pack_json(value, self.encoder))
