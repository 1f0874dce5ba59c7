"""One converter per source format: a parsed record → :class:`~archive.drafts.ConversationDraft`.

Converters raise :class:`~archive.drafts.Skip` with a readable reason for a record they cannot
import; what they repair (a missing parent, an unknown content type, an empty message) goes into the
draft's ``warnings``.

The formats, one module each: :mod:`.chatgpt`, :mod:`.openwebui`, :mod:`.sharegpt`, :mod:`.arbor` (Arbor
JSON) and :mod:`.jsonl` (Arbor JSON Lines); every module's docstring gives the shape it reads.
"""

from __future__ import annotations

from . import arbor, chatgpt, jsonl, openwebui, sharegpt
from .arbor import ARBOR_KEYS
from .jsonl import RUN_FORMAT, jsonl_groups

__all__ = ["ARBOR_KEYS", "CONVERTERS", "FORMATS", "RUN_FORMAT", "detect", "jsonl_groups"]

FORMATS = ("chatgpt", "openwebui", "sharegpt", "arbor", "jsonl")


def detect(record) -> str | None:
    """The format of a parsed record, or None when it looks like none of them."""
    if not isinstance(record, dict):
        return None
    if "arbor" in record and "runs" in record:
        return "arbor"
    if "run_id" in record:
        return "jsonl"
    if "mapping" in record:
        return "chatgpt"
    if isinstance(record.get("chat"), dict) or isinstance(record.get("history"), dict):
        return "openwebui"
    if isinstance(record.get("conversations"), list) or isinstance(record.get("items"), list):
        return "sharegpt"
    return None


CONVERTERS = {"chatgpt": chatgpt.convert, "openwebui": openwebui.convert, "sharegpt": sharegpt.convert,
              "arbor": arbor.convert, "jsonl": jsonl.convert}
