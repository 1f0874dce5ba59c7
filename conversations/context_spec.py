"""The context spec of a model call: what a run's context was made of, and rebuilding it exactly later.

The context of a run is the system prompt, the messages on the path from the root to the run's
parent, and the run's own messages so far (its input, then any tool traffic). Nothing is copied per
run: a model call's step stores a small *spec* (``ContextSpec``) from which the same list of
messages is rebuilt, plus the SHA-256 of the exact JSON sent, so a rebuild is checked, not trusted.
Ancestors are immutable once finished, so a rebuild reads what was read then.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from django.db import connections, router

from memory.models import Compaction, Pin

from .models import Message, PathMessage, Run, db_uuid
from .models.runs import _ancestor_ids_sql, _pk, _segment_tails_cte

SUMMARY_HEADER = "Summary of the earlier conversation:\n"
# The last "not seen" sentence of every context: stored with none of them, added back when read.
OTHER_BRANCHES_NOTE = "Turns on other branches are never sent: only this turn's ancestors are."


@dataclass
class ContextSpec:
    """What a model call's context was made of (stored in ``Step.request["context"]``).

    ``own_upto``: the run's own messages with ``position < own_upto`` are included.
    ``from_depth``: ancestors shallower than this were left out (a memory window or compaction).
    ``replaced``: message id → content sent instead (truncated tool results, for example).
    ``summary``: the compaction summary sent after the system prompt, by reference: ``{"id":
    compaction id, "version": n}`` (n: the summary's version, 1 for the text first written, one
    more per edit; :func:`summary_text` reads it), or None. Specs stored before summaries were
    referenced hold ``{"id", "text"}`` (the text itself), which rebuilds as it is.
    ``dropped``: ids of messages on the path that were left out (a window or budget cut inside a
    turn, an unfinished tool exchange).
    ``memory_id``: when set, ancestors' messages count only if their run has this memory id
    (isolation between agents); the run's own messages are governed by ``own_upto`` alone.
    ``tail``: messages sent after everything else, stored literally (a nested agent's prompt).
    ``compaction``: id of the :class:`memory.models.Compaction` whose summary/replacements were used.
    ``pinned``: ids of pinned messages on the path: always sent, verbatim, in path order, whatever
    ``from_depth``, ``dropped``, ``replaced`` and ``memory_id`` say.
    """

    system: str | None
    own_upto: int
    from_depth: int = 0
    replaced: dict[str, str] = field(default_factory=dict)
    summary: dict | None = None
    dropped: list[int] = field(default_factory=list)
    memory_id: str | None = None
    tail: list[dict] = field(default_factory=list)
    compaction: int | None = None
    pinned: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        """The spec as JSON, fields at their default left out (``from_json`` puts them back): it is
        stored with every model call, so its size is paid on every turn."""
        defaults = ContextSpec(system=None, own_upto=0)
        data = asdict(self)
        return {k: v for k, v in data.items() if k in ("system", "own_upto") or v != getattr(defaults, k)}

    @classmethod
    def from_json(cls, data: dict) -> ContextSpec:
        """A spec from its JSON; fields added later take their defaults for older specs."""
        return cls(**data)


def digest(messages: list[dict]) -> str:
    """SHA-256 of the canonical JSON of a message list (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class PathSlice(list):
    """Messages of a path read from depth ``start`` on (a list of :class:`PathMessage`, in order),
    plus every message of the runs in ``also`` (whatever their depth), as
    :func:`path_messages` read them with a ``from_depth``.

    ``earlier``: ``(memory_id, depth)`` of the path's other runs, whose messages were not read
    (those above ``start`` and not in ``also``). ``compactions`` and ``pins``: what the slice was chosen
    from, as the engine read them (``(newest ready Compaction or None, a newer one pending)`` for
    ``memory_id``, and ``[(run_id, message_id or None)]`` of the pins on the path), or None.
    """

    start: int = 0
    also: frozenset = frozenset()
    earlier: tuple = ()
    memory_id: str | None = None
    compactions: tuple | None = None
    pins: list | None = None


def path_messages(run: Run | str, *, from_depth: int = 0, also=()) -> list[PathMessage]:
    """Messages from the root to ``run`` inclusive, in order: one query at any depth. With
    ``from_depth`` > 0, a :class:`PathSlice`: only the runs at that depth or deeper, and those in
    ``also`` (run ids), are read (its ``earlier`` is left empty for the caller, who knows the runs)."""
    if from_depth <= 0:
        return Message.objects.path(run, inclusive=True)
    out = PathSlice(Message.objects.path(run, inclusive=True, from_depth=from_depth, runs=sorted(also, key=str)))
    out.start, out.also = from_depth, frozenset(also)
    return out


def on_path(queryset, run: Run | str, *, inclusive: bool = False):
    """``queryset`` (of a model with a ``run`` foreign key) narrowed to the rows of ``run``'s
    ancestors (and of ``run`` when ``inclusive``). The run ids come from the segment walk alone: no
    run row is read (``run__in=Run.objects.ancestor_of(...)`` reads each run by primary key, four
    buffers a run on a table of 1,000,000 runs). On PostgreSQL they are one array, so the rows are
    found by index lookups on their run whatever the table's size or statistics (an ``IN`` subquery
    may be planned as a scan of the whole table, or a rescan of the path per row)."""
    ids = _ancestor_ids_sql(_pk(run), inclusive=inclusive, using=queryset.db)
    column = f'"{queryset.model._meta.db_table}"."{queryset.model._meta.get_field("run").column}"'
    if connections[queryset.db].vendor != "postgresql":
        return queryset.filter(run_id__in=ids)
    return queryset.extra(where=[f"{column} = ANY(ARRAY({ids.sql}))"], params=list(ids.params))


class PathFacts(NamedTuple):
    """What :func:`path_facts` reads: ``memory_ids`` ``[memory_id of the run at depth 0, 1, …]``
    of the whole path (a path has one run per depth); ``pins`` ``[(run_id, message_id or None)]``
    on the ancestors; ``compactions`` ``[(depth of its run, status, compaction_id)]`` on the
    ancestors for the memory id asked."""

    memory_ids: list[str]
    pins: list[tuple]
    compactions: list[tuple]


def path_facts(run: Run | str, memory_id: str) -> PathFacts:
    """The memory ids of the runs on the path to ``run`` (inclusive), the pins and the compactions
    of ``memory_id`` on its ancestors: one statement, one segment walk. The runs are read from the
    ``(segment, depth)`` index range scan (index-only: ``run_segment_depth`` carries the memory id),
    and only the depths where the memory id changes are sent (a path of 1,000 runs of one agent is
    one row, not 1,000: the window function ``lag`` over the path by depth); pins and compactions
    are found by index lookups on their run (PostgreSQL: an array of the path's ids)."""
    table, run_id = Run._meta.db_table, db_uuid(_pk(run))
    conn = connections[router.db_for_read(Run)]
    ancestors = "SELECT id FROM path WHERE id <> %s"
    of_path = f"= ANY(ARRAY({ancestors}))" if conn.vendor == "postgresql" else f"IN ({ancestors})"
    sql = (
        _segment_tails_cte() + f", path(id, depth, memory_id) AS (SELECT p.id, p.depth, p.memory_id"
        f" FROM tails t JOIN {table} c ON c.id = t.id JOIN {table} p ON p.segment = c.segment AND p.depth <= c.depth)"
        f" SELECT 0, NULL, depth, memory_id, CAST(NULL AS bigint) FROM (SELECT depth, memory_id,"
        f" lag(memory_id) OVER (ORDER BY depth) AS before FROM path) changes"
        f" WHERE before IS NULL OR before <> memory_id"
        f" UNION ALL SELECT 1, run_id, NULL, NULL, message_id FROM {Pin._meta.db_table} WHERE run_id IN ({ancestors})"
        f" UNION ALL SELECT 2, NULL, (SELECT depth FROM path WHERE path.id = run_id), status, id"
        f" FROM {Compaction._meta.db_table} WHERE memory_id = %s AND run_id {of_path}"
    )
    with conn.cursor() as cursor:
        cursor.execute(sql, [run_id, run_id, memory_id, run_id])
        rows = cursor.fetchall()
    changes, pins, compactions = [], [], []
    for kind, pk, depth, text, number in rows:
        if kind == 0:
            changes.append((depth, text))
        elif kind == 1:
            pins.append((pk if isinstance(pk, uuid.UUID) else uuid.UUID(pk), number))
        else:
            compactions.append((depth, text, number))
    return PathFacts(_expand(sorted(changes), _depth_of(run)), pins, compactions)


def _expand(changes: list[tuple[int, str]], depth: int) -> list[str]:
    """``[memory id at depth 0, 1, …, depth]`` from ``changes`` ``[(depth where it changes, memory
    id from there)]`` sorted by depth, the first at depth 0."""
    out: list[str] = []
    for (start, memory_id), (end, _) in zip(changes, [*changes[1:], (depth + 1, None)], strict=True):
        out.extend([memory_id] * (end - start))
    return out


def _depth_of(run: Run | str) -> int:
    """``run``'s depth: the instance's, else one query (a caller with only an id)."""
    if isinstance(run, Run) and run.depth is not None:
        return run.depth
    return Run.objects.filter(pk=_pk(run)).values_list("depth", flat=True).get()


def path_memory_ids(run: Run | str) -> dict:
    """``{run_id: memory_id}`` for ``run`` and its ancestors: one query."""
    return dict(Run.objects.ancestor_of(run, inclusive=True).values_list("pk", "memory_id"))


def summary_ref(compaction: Compaction) -> dict:
    """How a spec names ``compaction``'s summary as it reads now: ``{"id", "version"}``."""
    return {"id": compaction.pk, "version": len(compaction.versions or []) + 1}


def summary_at(compaction: Compaction, version: int) -> str:
    """The summary text of ``compaction`` at ``version`` (1: as first written; each edit adds one
    and keeps the older text in ``versions``). Raises LookupError for a version it never had."""
    earlier = compaction.versions or []
    if version == len(earlier) + 1:
        return compaction.summary
    if 1 <= version <= len(earlier):
        return earlier[version - 1]["summary"]
    raise LookupError(f"compaction {compaction.pk} has no summary version {version}")


def summary_text(summary: dict) -> str:
    """The system message a spec's ``summary`` sent: ``SUMMARY_HEADER`` + the compaction's summary
    at the spec's version (one query), or the text itself in specs that stored it. Raises
    LookupError when the compaction or that version no longer exists."""
    if "text" in summary:
        return summary["text"]
    compaction = Compaction.objects.filter(pk=summary["id"]).only("summary", "versions").first()
    if compaction is None:
        raise LookupError(f"compaction {summary['id']} no longer exists")
    return SUMMARY_HEADER + summary_at(compaction, int(summary.get("version", 1)))


def render_prefix(spec: ContextSpec, summary: str | None = None) -> list[dict]:
    """The messages a context opens with: the system prompt, then the compaction summary (if any):
    ``summary`` when the caller has its text, else read by :func:`summary_text`."""
    out: list[dict] = []
    if spec.system:
        out.append({"role": "system", "content": spec.system})
    if spec.summary:
        out.append({"role": "system", "content": summary if summary is not None else summary_text(spec.summary)})
    return out


def render(spec: ContextSpec, run: Run, messages: list[Message], memory_ids: dict | None = None) -> list[dict]:
    """The OpenAI-format messages that ``spec`` selects from ``messages`` (the path to ``run``).

    ``memory_ids`` (``{run_id: memory_id}`` of the path) is read when the spec names a memory id
    and it is not given."""
    out = render_prefix(spec)
    if spec.memory_id is not None and memory_ids is None:
        memory_ids = path_memory_ids(run)
    dropped, pinned = set(spec.dropped), set(spec.pinned)
    for message in messages:
        own = message.run_id == run.pk
        if own and message.position >= spec.own_upto:
            continue
        if not own and message.pk in pinned:
            out.append(message.as_openai())
            continue
        if not own and message.run.depth < spec.from_depth:
            continue
        if not own and spec.memory_id is not None and memory_ids.get(message.run_id) != spec.memory_id:
            continue
        if message.pk in dropped:
            continue
        data = message.as_openai()
        if str(message.pk) in spec.replaced:
            data["content"] = spec.replaced[str(message.pk)]
        out.append(data)
    out.extend(dict(m) for m in spec.tail)
    return out


def rebuild(run: Run, spec_json: dict) -> list[dict]:
    """The exact messages a model call of ``run`` sent, from the spec its step stored."""
    spec = ContextSpec.from_json(spec_json)
    return render(spec, run, path_messages(run))


def verify(run: Run, request: dict | None) -> dict:
    """Rebuild a model call's exact messages and check them against the digest stored when sent.

    ``request``: the ``Step.request`` of one of ``run``'s ``llm_call`` steps (its ``"context"`` is
    the :class:`ContextSpec` JSON, its ``"sha256"`` the digest of the messages sent).

    Returns ``{"messages": list[dict] | None, "sha256": str | None, "verified": bool | None,
    "error": str | None}``: ``verified`` is True/False when a digest was stored, None when not (or
    when the step stored no spec, then ``messages`` is None too). A rebuild that fails never
    raises: ``error`` says why (``"ExceptionType: message"``), ``verified`` is False.
    """
    request = request or {}
    spec = request.get("context")
    if not isinstance(spec, dict):
        return {"messages": None, "sha256": None, "verified": None, "error": None}
    try:
        messages = rebuild(run, spec)
    except Exception as exc:  # a stored spec may no longer rebuild: report it, never crash
        return {"messages": None, "sha256": None, "verified": False, "error": f"{type(exc).__name__}: {exc}"}
    sha = digest(messages)
    expected = request.get("sha256")
    return {"messages": messages, "sha256": sha, "verified": (sha == expected) if expected else None, "error": None}


def pack_parts(parts: dict) -> dict:
    """The form in which a model call's step stores what was sent part by part (it is written on
    every turn, so it is kept small): ``{"labels": "system:1 summary:1 history:40 input:1"`` (each
    part and how many messages in a row have it), ``"message_tokens": "12 380 45 …"`` (one count
    per message sent, in order), ``"totals": {part: tokens}``, ``"not_seen": [sentence]`` (left
    out when only :data:`OTHER_BRANCHES_NOTE` applies)}``. ``parts``: the shape of
    :meth:`engine.context.BuiltContext.parts`; :func:`unpack_parts` gives it back."""
    runs: list[list] = []
    for row in parts["messages"]:
        if runs and runs[-1][0] == row["part"]:
            runs[-1][1] += 1
        else:
            runs.append([row["part"], 1])
    packed = {"labels": " ".join(f"{part}:{count}" for part, count in runs),
              "message_tokens": " ".join(str(row["message_tokens"]) for row in parts["messages"]),
              "totals": parts["totals"]}
    notes = [note for note in parts.get("not_seen") or [] if note != OTHER_BRANCHES_NOTE]
    if notes:
        packed["not_seen"] = notes
    return packed


def unpack_parts(stored: dict) -> dict:
    """``{"messages": [{"part", "message_tokens"}], "totals", "not_seen"}`` from a stored
    ``context_parts``, packed (:func:`pack_parts`) or as older steps stored it (already this shape)."""
    if "labels" not in stored:
        return {"messages": stored.get("messages"), "totals": stored.get("totals"),
                "not_seen": list(stored.get("not_seen") or [])}
    labels = []
    for item in stored["labels"].split():
        part, _, count = item.rpartition(":")
        labels += [part] * int(count)
    counts = [int(n) for n in stored.get("message_tokens", "").split()]
    rows = [{"part": part, "message_tokens": n} for part, n in zip(labels, counts, strict=False)]
    return {"messages": rows if len(labels) == len(counts) else None, "totals": stored.get("totals"),
            "not_seen": [*(stored.get("not_seen") or []), OTHER_BRANCHES_NOTE]}


def model_saw(run: Run, step) -> dict:
    """What one model call of ``run`` sent, for its owner (the API's ``GET /api/runs/{id}/context``
    and the "What the model saw" page show exactly this).

    Returns ``{"model", "params", "messages": list[dict], "sha256", "verified": bool, "error": str |
    None, "context_tokens": int | None, "usable_window": int | None, "parts": [{"index", "part",
    "tokens"}] | None, "totals": {part: tokens} | None, "not_seen": [sentence]}``. ``messages`` is
    rebuilt from the stored spec and ``verified`` checks it against the SHA-256 stored when sent.
    The parts (system, summary, pin, history, tool, input, tail) and the not-seen sentences are those
    the engine recorded while building (``Step.request["context_parts"]``); calls recorded before
    parts existed have ``parts`` None. ``messages`` is None (and ``error`` says why) when the spec no
    longer rebuilds."""
    request = step.request or {}
    checked = verify(run, request)
    stored = unpack_parts(request.get("context_parts") or {})
    rows = stored["messages"]
    messages = checked["messages"]
    parts = None
    if messages is not None and isinstance(rows, list) and len(rows) == len(messages):
        parts = [{"index": i, "part": row["part"], "tokens": row["message_tokens"]} for i, row in enumerate(rows)]
    return {
        "model": request.get("model", run.model), "params": request.get("params", {}), "messages": messages,
        "sha256": checked["sha256"], "verified": bool(checked["verified"]), "error": checked["error"],
        "context_tokens": request.get("context_tokens"), "usable_window": request.get("usable_window"),
        "parts": parts, "totals": stored["totals"] if parts is not None else None,
        "not_seen": stored["not_seen"] if request.get("context_parts") else [],
    }
