"""The branch diff, pure: two branches' turns aligned, word-level differences, per-branch totals.

No database and no Django here: :func:`branches.selectors.branch_diff` reads the two paths and
hands their turns (:class:`TurnText`) to :func:`diff_branches`.

Algorithms (Python's :mod:`difflib`, Ratcliff/Obershelp "gestalt pattern matching"):

* **Turn alignment**: :class:`difflib.SequenceMatcher` over the two lists of user inputs. Turns in
  ``equal`` blocks are paired; a ``replace`` block pairs its turns in order, and the longer side's
  rest stands alone; ``delete``/``insert`` blocks are turns of one branch only. A regenerated or
  edited turn therefore lines up with its counterpart, and a turn inserted in one branch does not
  shift every later pair.
* **Word differences**: the same matcher over words. A text is split into tokens of a word and the
  white space after it (``\\S+\\s*``), compared by the word alone, and given back as segments
  ``(op, text)`` whose texts joined give the original text exactly: ``op`` is ``"equal"``,
  ``"delete"`` (only in branch A) or ``"insert"`` (only in branch B); the white space after a
  changed stretch is left ``equal``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

_TOKEN = re.compile(r"\s+|\S+\s*")
# Longer texts than this many words are compared with difflib's autojunk heuristic (frequent words
# become junk), which keeps a pair of long answers fast; below it, every word counts.
EXACT_WORDS = 2_000


@dataclass(frozen=True, slots=True)
class TurnText:
    """One turn of a branch as the diff needs it. ``latency`` in seconds, ``cost`` in USD (None:
    unknown or the model has no price)."""

    run_id: object
    depth: int
    input: str
    answer: str
    model: str = ""
    status: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency: float | None = None
    cost: float | None = None


Segment = tuple[str, str]  # (op, text): op "equal", "delete" (A only) or "insert" (B only)


@dataclass(slots=True)
class Row:
    """One aligned row: ``kind`` is ``same`` (input and answer equal), ``changed``, ``only_a`` or
    ``only_b``; segments are the word diff of each side (one whole segment on a one-sided row)."""

    kind: str
    a: TurnText | None
    b: TurnText | None
    a_input: list[Segment] = field(default_factory=list)
    b_input: list[Segment] = field(default_factory=list)
    a_answer: list[Segment] = field(default_factory=list)
    b_answer: list[Segment] = field(default_factory=list)


@dataclass(slots=True)
class DiffTotals:
    """Sums over a branch's turns below the common ancestor. ``latency`` in seconds; ``cost`` in
    USD over the turns whose model has a price (None when none has); ``cost_complete`` is False when
    some turn's cost is unknown."""

    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0
    cost: float | None = None
    cost_complete: bool = True

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def tokens(text: str) -> list[str]:
    """``text`` as word-plus-following-space tokens (leading white space is a token of its own);
    ``"".join(tokens(text)) == text``."""
    return _TOKEN.findall(text or "")


def word_diff(a: str, b: str) -> tuple[list[Segment], list[Segment]]:
    """Word-level difference of ``a`` and ``b``: ``(segments of a, segments of b)``; equal words are
    ``equal`` on both sides, ``a``'s own words ``delete``, ``b``'s own words ``insert``. Adjacent
    segments of one op are merged."""
    if a == b:
        return _whole("equal", a), _whole("equal", b)
    ta, tb = tokens(a), tokens(b)
    wa, wb = [t.strip() for t in ta], [t.strip() for t in tb]
    matcher = SequenceMatcher(None, wa, wb, autojunk=max(len(wa), len(wb)) > EXACT_WORDS)
    left: list[Segment] = []
    right: list[Segment] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            left.extend(("equal", t) for t in ta[i1:i2])
            right.extend(("equal", t) for t in tb[j1:j2])
        else:
            left.extend(_changed("delete", "".join(ta[i1:i2])))
            right.extend(_changed("insert", "".join(tb[j1:j2])))
    return _merge(left), _merge(right)


def _changed(op: str, text: str) -> list[Segment]:
    """A changed stretch as a segment, the white space after its last word left unmarked."""
    word = text.rstrip()
    return [(op, word), ("equal", text[len(word):])] if word != text else [(op, text)] if text else []


def _merge(segments: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for op, text in segments:
        if out and out[-1][0] == op:
            out[-1] = (op, out[-1][1] + text)
        else:
            out.append((op, text))
    return out


def align(a_inputs: list[str], b_inputs: list[str]) -> list[tuple[int | None, int | None]]:
    """Pairs of indexes ``(i, j)`` into the two lists of inputs, in order; ``None`` on a side that
    has no counterpart (see the module docstring)."""
    pairs: list[tuple[int | None, int | None]] = []
    matcher = SequenceMatcher(None, a_inputs, b_inputs, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op in ("equal", "replace"):
            common = min(i2 - i1, j2 - j1)
            pairs.extend((i1 + k, j1 + k) for k in range(common))
            pairs.extend((i, None) for i in range(i1 + common, i2))
            pairs.extend((None, j) for j in range(j1 + common, j2))
        elif op == "delete":
            pairs.extend((i, None) for i in range(i1, i2))
        else:
            pairs.extend((None, j) for j in range(j1, j2))
    return pairs


def _whole(op: str, text: str) -> list[Segment]:
    return [(op, text)] if text else []


def _row(a: TurnText | None, b: TurnText | None) -> Row:
    if b is None:
        return Row("only_a", a, None, a_input=_whole("delete", a.input), a_answer=_whole("delete", a.answer))
    if a is None:
        return Row("only_b", None, b, b_input=_whole("insert", b.input), b_answer=_whole("insert", b.answer))
    a_input, b_input = word_diff(a.input, b.input)
    a_answer, b_answer = word_diff(a.answer, b.answer)
    kind = "same" if a.input == b.input and a.answer == b.answer else "changed"
    return Row(kind, a, b, a_input, b_input, a_answer, b_answer)


def totals(turns: list[TurnText]) -> DiffTotals:
    """:class:`DiffTotals` of ``turns``."""
    out = DiffTotals(turns=len(turns))
    for turn in turns:
        out.prompt_tokens += turn.prompt_tokens or 0
        out.completion_tokens += turn.completion_tokens or 0
        out.latency += turn.latency or 0.0
        if turn.cost is None:
            out.cost_complete = False
        else:
            out.cost = (out.cost or 0.0) + turn.cost
    return out


def diff_branches(a_turns: list[TurnText], b_turns: list[TurnText]) -> tuple[list[Row], DiffTotals, DiffTotals]:
    """Align two branches' turns (each root-first, below their common ancestor) and diff each pair:
    ``(rows, totals of A, totals of B)``."""
    pairs = align([t.input for t in a_turns], [t.input for t in b_turns])
    rows = [_row(a_turns[i] if i is not None else None, b_turns[j] if j is not None else None) for i, j in pairs]
    return rows, totals(a_turns), totals(b_turns)
