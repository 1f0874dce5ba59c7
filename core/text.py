"""Checking text that users send (inputs, titles, model names): one rule for every field.

PostgreSQL's ``text`` cannot store NUL, and the other C0 control characters (and DEL) have no
place in a chat message or a title: a field holding any of them is refused with a 400 naming the
field, never stored and never a 500. Tab, line feed and carriage return are allowed where the
field is multi-line.
"""

from __future__ import annotations

import re

from .errors import InvalidInput

_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f]")


def clean_text(value, *, field: str, max_length: int, required: bool = True, multiline: bool = False,
               strip: bool = True) -> str:
    """``value`` checked: a string of at most ``max_length`` characters (after stripping white
    space when ``strip``), not empty when ``required``, without control characters (tab and line
    breaks allowed when ``multiline``). Raises InvalidInput naming ``field``."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string")
    if strip:
        value = value.strip()
    if required and not value.strip():
        raise InvalidInput(f"{field} is empty")
    if (_CONTROL_MULTILINE if multiline else _CONTROL_ONE_LINE).search(value):
        raise InvalidInput(f"{field} contains a control character (such as NUL)")
    if len(value) > max_length:
        raise InvalidInput(f"{field} is longer than {max_length} characters")
    return value


def clean_json_strings(value, *, field: str, max_depth: int = 32):
    """``value`` (decoded JSON: dicts, lists, strings, numbers) unchanged when no key or string in
    it holds NUL (PostgreSQL's ``jsonb`` cannot store ``\\u0000``) and it nests at most
    ``max_depth`` levels. Raises InvalidInput naming ``field``."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise InvalidInput(f"{field} is nested more than {max_depth} levels")
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidInput(f"{field} contains a control character (such as NUL)")
        elif isinstance(item, dict):
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return value
