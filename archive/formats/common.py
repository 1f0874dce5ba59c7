"""What the converters share: the roles a message may have and the warnings about repaired content."""

from __future__ import annotations

from collections import Counter

ROLES = {"system", "user", "assistant", "tool"}


def warn_counts(counts: Counter, warnings: list[str]) -> None:
    """Append one readable warning per kind of repair counted in ``counts``."""
    texts = {
        "empty": "{n} empty message(s) dropped",
        "unknown_type": "{n} message(s) of an unknown content type kept as text with the raw content in metadata",
        "unknown_role": "{n} message(s) with an unknown author role imported as assistant messages",
        "bad_node": "{n} node(s) that are not objects ignored",
        "non_text_part": "{n} non-text part(s) (images, audio, files) kept as placeholders with details in metadata",
    }
    for key, n in counts.items():
        if n and key in texts:
            warnings.append(texts[key].format(n=n))

