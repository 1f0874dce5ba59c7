"""Ids from requests and rows: one parser for every UUID primary key a caller names.

>>> as_uuid("0b3c2a4e-6f7d-4e1a-9c8b-2d5e6f7a8b9c")
UUID('0b3c2a4e-6f7d-4e1a-9c8b-2d5e6f7a8b9c')
>>> parse_id("nope", "run")
Traceback (most recent call last):
...
core.errors.NotFound: No run with id 'nope'.
"""

from __future__ import annotations

import uuid

from .errors import NotFound


def as_uuid(value) -> uuid.UUID | None:
    """``value`` (a UUID, its text in any form :class:`uuid.UUID` reads, or None) as a UUID; None
    stays None. Raises ValueError for text that is not a UUID."""
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


def parse_id(value, what: str, message: str | None = None) -> uuid.UUID:
    """The UUID a caller named as the id of a ``what`` (``"run"``, ``"label"``, ...); a malformed id
    raises :class:`core.errors.NotFound` (``message``, else ``No <what> with id '<value>'.``), the
    answer an id that does not exist gets, so a bad id and a missing row read the same."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(message or f"No {what} with id {value!r}.") from None
