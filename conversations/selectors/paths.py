"""Reads of one branch as the chat shows it: a window of the path to a leaf (newest part first),
sibling positions, branch totals and branch points. Each costs a constant number of queries
whatever the depth of the branch (the UI tests assert the counts).

* A branch window is the newest ``limit`` runs of the path to a leaf: one recursive CTE that stops
  after ``limit`` steps up, joined to the messages (one query).
* Sibling positions (``2/3``, previous and next sibling) for every run of a window: one query with
  SQL window functions (``ROW_NUMBER``/``COUNT``/``LAG``/``LEAD`` partitioned by parent run).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.db.models.expressions import RawSQL

from core.ids import as_uuid
from memory.models import Compaction, Pin

from ..models import Message, Role, Run, Session, db_uuid
from .pages import run_previews

RUN_TABLE = Run._meta.db_table
MAX_WINDOW = 200  # turns of a branch a chat page renders at most when it reaches back to a given turn


def path_window_sql(start_id, limit: int, *, skip_start: bool = False) -> RawSQL:
    """Ids of ``start_id`` and its ancestors, at most ``limit`` runs counted from ``start_id``
    (``skip_start`` leaves ``start_id`` itself out: the ``limit - 1`` runs above it)."""
    sql = (
        f"WITH RECURSIVE path(id, parent_run_id, n) AS ("
        f" SELECT id, parent_run_id, 1 FROM {RUN_TABLE} WHERE id = %s"
        f" UNION ALL"
        f" SELECT r.id, r.parent_run_id, p.n + 1 FROM {RUN_TABLE} r JOIN path p ON r.id = p.parent_run_id"
        f" WHERE p.n < %s"
        f") SELECT id FROM path" + (" WHERE n > 1" if skip_start else "")
    )
    return RawSQL(sql, [db_uuid(start_id), int(limit)])


def with_pin_state(messages):
    """``messages`` (a Message query) annotated ``turn_pinned`` (its run is pinned as a whole) and
    ``message_pinned`` (the message itself is pinned): subqueries, no extra query."""
    return messages.annotate(
        turn_pinned=Exists(Pin.objects.filter(run_id=OuterRef("run_id"), message__isnull=True)),
        message_pinned=Exists(Pin.objects.filter(message_id=OuterRef("pk"))),
    )


@dataclass
class ChatTurn:
    """One run of a branch as the chat shows it."""

    run: Run
    messages: list[Message] = field(default_factory=list)
    shared: bool = False  # a fork's ancestor, owned by the source session (read-only here)
    sibling_index: int = 1
    sibling_count: int = 1
    prev_sibling_id: uuid.UUID | None = None
    next_sibling_id: uuid.UUID | None = None
    compactions: list = field(default_factory=list)  # memory.models.Compaction attached to this run

    @property
    def input(self) -> str:
        for m in self.messages:
            if m.position == 0:
                return m.content
        return ""

    @property
    def tool_calls(self) -> list[dict]:
        """The run's tool calls paired with their results (see :func:`pair_tool_calls`; from the
        messages already loaded, no query)."""
        return pair_tool_calls(self.messages)

    @property
    def pin(self) -> str:
        """What of this turn is pinned (:class:`memory.models.Pin`): "turn" (the whole turn), "answer",
        "input", "messages" (other messages of it) or "" (nothing), from the messages as loaded
        by :func:`with_pin_state` (no query; "" when they were loaded without it)."""
        if any(getattr(m, "turn_pinned", False) for m in self.messages):
            return "turn"
        pinned = [m for m in self.messages if getattr(m, "message_pinned", False)]
        if not pinned:
            return ""
        if len(pinned) == 1 and pinned[0] is self.answer:
            return "answer"
        if len(pinned) == 1 and pinned[0].position == 0:
            return "input"
        return "messages"

    @property
    def answer(self) -> Message | None:
        found = None
        for m in self.messages:
            if m.role == "assistant":
                found = m
        return found


def pair_tool_calls(messages: list[Message]) -> list[dict]:
    """The tool calls of ``messages`` (assistant messages with ``tool_calls``) paired with their
    results (tool messages answering them by ``tool_call_id``), in call order:
    ``[{"id", "name", "arguments" (the JSON text the model sent), "result" (str, None if unanswered)}]``."""
    results = {m.tool_call_id: m.content for m in messages if m.role == Role.TOOL}
    calls = []
    for message in messages:
        if message.role == Role.ASSISTANT and message.tool_calls:
            for call in message.tool_calls:
                function = call.get("function") or {}
                calls.append({"id": call.get("id"), "name": function.get("name"),
                              "arguments": function.get("arguments"), "result": results.get(call.get("id"))})
    return calls


def compactions_by_run(run_ids) -> dict:
    """``{run_id: [Compaction, oldest first]}`` of the runs ``run_ids`` (a list of ids or a query
    of ids): one query. Runs without a compaction are absent."""
    by_run: dict = {}
    for compaction in Compaction.objects.filter(run_id__in=run_ids).order_by("created_at"):
        by_run.setdefault(compaction.run_id, []).append(compaction)
    return by_run


def attach_compactions(turns: list[ChatTurn]) -> None:
    """Set ``turn.compactions``: the compaction records attached to each turn's run (one query, none
    for no turns), shown as expandable summary markers where they stand."""
    by_run = compactions_by_run([t.run.pk for t in turns]) if turns else {}
    for turn in turns:
        turn.compactions = by_run.get(turn.run.pk, [])


def branch_window(session: Session, start_id, limit: int, *, skip_start: bool = False) -> list[ChatTurn]:
    """Turns of the path ending at ``start_id`` (root first), at most ``limit`` of them, with their
    messages and sibling positions: two queries at any depth. ``skip_start``: the turns *above*
    ``start_id`` (how "older turns" are loaded)."""
    if start_id is None:
        return []
    turns: dict = {}
    qs = (
        with_pin_state(Message.objects).filter(run_id__in=path_window_sql(start_id, limit + (1 if skip_start else 0),
                                                           skip_start=skip_start))
        .select_related("run", "run__agent", "run__connection")
        .order_by("run__depth", "position")
    )
    for message in qs:
        turn = turns.get(message.run_id)
        if turn is None:
            turn = turns[message.run_id] = ChatTurn(run=message.run, shared=message.run.session_id != session.pk)
        turn.messages.append(message)
    result = list(turns.values())
    attach_siblings(session, result)
    return result


def _visible_clause(session: Session) -> tuple[str, list]:
    """SQL restricting runs to the session's tree: its own runs (not pruned) and, for a fork, the
    shared chain."""
    own = "(session_id = %s AND pruned_by_id IS NULL)"
    if session.forked_from_run_id is None:
        return own, [db_uuid(session.pk)]
    chain = (
        f"WITH RECURSIVE chain(id, parent_run_id) AS ("
        f" SELECT id, parent_run_id FROM {RUN_TABLE} WHERE id = %s"
        f" UNION ALL"
        f" SELECT r.id, r.parent_run_id FROM {RUN_TABLE} r JOIN chain c ON r.id = c.parent_run_id"
        f") SELECT id FROM chain"
    )
    return f"({own} OR id IN ({chain}))", [db_uuid(session.pk), db_uuid(session.forked_from_run_id)]


def sibling_positions(session: Session, runs: list[Run]) -> dict:
    """``{run_id: (index 1-based, count, previous sibling id, next sibling id)}`` for ``runs``,
    siblings ordered by creation and limited to the session's tree. One query."""
    if not runs:
        return {}
    parent_ids = sorted({r.parent_run_id for r in runs if r.parent_run_id is not None}, key=str)
    has_root = any(r.parent_run_id is None for r in runs)
    where_parent = []
    params: list = []
    if parent_ids:
        where_parent.append(f"parent_run_id IN ({', '.join(['%s'] * len(parent_ids))})")
        params += [db_uuid(p) for p in parent_ids]
    if has_root:
        where_parent.append("parent_run_id IS NULL")
    visible, visible_params = _visible_clause(session)
    params += visible_params
    ids = [db_uuid(r.pk) for r in runs]
    window = "PARTITION BY parent_run_id ORDER BY created_at, id"
    sql = (
        f"SELECT id, rn, total, prev_id, next_id FROM ("
        f" SELECT id, ROW_NUMBER() OVER ({window}) AS rn,"
        f" COUNT(*) OVER (PARTITION BY parent_run_id) AS total,"
        f" LAG(id) OVER ({window}) AS prev_id, LEAD(id) OVER ({window}) AS next_id"
        f" FROM {RUN_TABLE} WHERE ({' OR '.join(where_parent)}) AND {visible}"
        f") s WHERE id IN ({', '.join(['%s'] * len(ids))})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params + ids)
        rows = cursor.fetchall()
    return {as_uuid(i): (rn, total, as_uuid(prev), as_uuid(nxt)) for i, rn, total, prev, nxt in rows}


def attach_siblings(session: Session, turns: list[ChatTurn]) -> None:
    positions = sibling_positions(session, [t.run for t in turns])
    for turn in turns:
        index, count, prev, nxt = positions.get(turn.run.pk, (1, 1, None, None))
        turn.sibling_index, turn.sibling_count = index, count
        turn.prev_sibling_id, turn.next_sibling_id = prev, nxt


def branch_totals(leaf_id) -> dict:
    """Facts of the branch ending at ``leaf_id``: ``{"turns", "prompt_tokens", "completion_tokens"}``
    summed over the whole path (one query)."""
    if leaf_id is None:
        return {"turns": 0, "prompt_tokens": 0, "completion_tokens": 0}
    totals = Run.objects.ancestor_of(leaf_id, inclusive=True).aggregate(
        turns=Count("pk"), prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens"),
    )
    return {k: v or 0 for k, v in totals.items()}


@dataclass
class BranchPoint:
    """A turn of the shown branch that has other versions (siblings): version ``index`` of
    ``count``; ``below`` is the next run of the branch (None for its leaf); ``preview`` the first
    characters of the turn's input; ``from_leaf`` how many runs of the branch are below it."""

    run_id: uuid.UUID
    depth: int
    index: int
    count: int
    below: uuid.UUID | None
    from_leaf: int
    preview: str = ""
    url: str = ""  # where a link to it goes (set by the template tag that knows the pages)

    @property
    def turn(self) -> int:
        return self.depth + 1


def branch_points(session: Session, leaf_id, length: int = 80) -> list[BranchPoint]:
    """The branch points of the branch from the root to ``leaf_id`` (a run id; None: none), root
    first: every run of it with siblings in the session's tree, with its position among them (by
    creation, as the sibling navigator counts) and the next run of the branch. Two queries at any
    depth: the path (``Run.objects.ancestor_of``) with window functions over the siblings of its
    runs, then :func:`run_previews` of the branch points."""
    if leaf_id is None:
        return []
    path_sql, path_params = Run.objects.ancestor_of(leaf_id, inclusive=True).values("id").query.sql_with_params()
    visible, visible_params = _visible_clause(session)
    sql = (
        f"SELECT id, depth, rn, total, below, leaf_depth - depth FROM ("
        f" SELECT s.id, s.depth, s.rn, s.total, LEAD(s.id) OVER (ORDER BY s.depth) AS below,"
        f" MAX(s.depth) OVER () AS leaf_depth FROM ("
        f"  SELECT id, depth, ROW_NUMBER() OVER (PARTITION BY parent_run_id ORDER BY created_at, id) AS rn,"
        f"  COUNT(*) OVER (PARTITION BY parent_run_id) AS total"
        f"  FROM {RUN_TABLE} WHERE (parent_run_id IS NULL OR parent_run_id IN"
        f"  (SELECT parent_run_id FROM {RUN_TABLE} WHERE id IN ({path_sql}))) AND {visible}"
        f" ) s WHERE s.id IN ({path_sql})"
        f") t WHERE total > 1 ORDER BY depth"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*path_params, *visible_params, *path_params])
        rows = cursor.fetchall()
    points = [BranchPoint(as_uuid(i), depth, rn, total, as_uuid(below), n) for i, depth, rn, total, below, n in rows]
    previews = run_previews([p.run_id for p in points], length)
    for point in points:
        point.preview = previews.get(point.run_id, ("", "", 0, ""))[3]
    return points


def newest_leaf_below(session: Session, run: Run) -> Run:
    """The newest run of ``session`` at or below ``run`` (the branch shown when ``run`` is opened);
    ``run`` itself when the session has nothing below it. A fork's shared run counts too; pruned
    runs do not."""
    leaf = (
        Run.objects.descendant_of(run, inclusive=True).filter(Q(session=session, pruned_by__isnull=True) | Q(pk=run.pk))
        .order_by("-created_at", "-depth").first()
    )
    return leaf or run


def turn_of(session: Session, run: Run) -> ChatTurn:
    """Run ``run`` of ``session``'s tree as one chat turn: its messages, siblings and compactions."""
    turn = ChatTurn(run=run, messages=list(with_pin_state(run.messages.order_by("position"))),
                    shared=run.session_id != session.pk)
    attach_siblings(session, [turn])
    attach_compactions([turn])
    return turn


def is_on_branch(run: Run, leaf: Run) -> bool:
    """Whether ``run`` is on the branch from the root to ``leaf`` (``leaf`` itself included)."""
    return Run.objects.ancestor_of(leaf, inclusive=True).filter(pk=run.pk).exists()
