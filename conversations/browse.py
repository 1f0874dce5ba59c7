"""Reads for the HTML pages: a window of the active branch, siblings, branch totals, the tree plan
and session search. Everything here is read-only and costs a constant number of queries whatever
the depth of a branch or the number of runs in a session (the UI tests assert the counts).

* A branch window is the newest ``limit`` runs of the path to a leaf: one recursive CTE that stops
  after ``limit`` steps up, joined to the messages (one query).
* Sibling positions (``2/3``, previous and next sibling) for every run of a window: one query with
  SQL window functions (``ROW_NUMBER``/``COUNT``/``LAG``/``LEAD`` partitioned by parent run).
* The tree view reads the session's skeleton (id, parent, status, model: no message text) in one
  query, plans what to show within a node budget in Python, then reads the previews of the shown
  nodes only (one query).
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Case, Count, Exists, IntegerField, OuterRef, Q, Subquery, Sum, TextField, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Substr

from core.fields import encryption_enabled
from memory.models import Compaction

from .models import Message, Role, Run, Session, db_uuid

RUN_TABLE = Run._meta.db_table
MAX_WINDOW = 200  # turns of a branch a chat page renders at most when it reaches back to a given turn


def as_uuid(value) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


# --- the active branch, newest part first ---------------------------------------------------------

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


@dataclass
class Turn:
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


def attach_compactions(turns: list[Turn]) -> None:
    """Set ``turn.compactions``: the compaction records attached to each turn's run (one query, none
    for no turns), shown as expandable summary markers where they stand."""
    by_run = compactions_by_run([t.run.pk for t in turns]) if turns else {}
    for turn in turns:
        turn.compactions = by_run.get(turn.run.pk, [])


def branch_window(session: Session, start_id, limit: int, *, skip_start: bool = False) -> list[Turn]:
    """Turns of the path ending at ``start_id`` (root first), at most ``limit`` of them, with their
    messages and sibling positions: two queries at any depth. ``skip_start``: the turns *above*
    ``start_id`` (how "older turns" are loaded)."""
    if start_id is None:
        return []
    turns: dict = {}
    qs = (
        Message.objects.filter(run_id__in=path_window_sql(start_id, limit + (1 if skip_start else 0),
                                                           skip_start=skip_start))
        .select_related("run", "run__agent", "run__connection")
        .order_by("run__depth", "position")
    )
    for message in qs:
        turn = turns.get(message.run_id)
        if turn is None:
            turn = turns[message.run_id] = Turn(run=message.run, shared=message.run.session_id != session.pk)
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


def attach_siblings(session: Session, turns: list[Turn]) -> None:
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


# --- the tree view --------------------------------------------------------------------------------

class Node:
    """A run in the tree view. ``id``/``parent_id`` are the database's text form of the UUID (hex on
    SQLite, dashed on PostgreSQL: no per-row conversion for 10,000 rows); ``uid`` is the UUID.
    ``status``, ``model``, ``depth`` and ``preview`` are filled in for the runs shown only."""

    __slots__ = ("id", "parent_id", "shared", "children", "size", "on_path", "active", "status", "model",
                 "depth", "preview")

    def __init__(self, id, parent_id, shared):
        self.id, self.parent_id, self.shared = id, parent_id, shared
        self.children: list = []
        self.size = 1  # runs in the subtree, this one included
        self.on_path = False
        self.active = False
        self.status, self.model, self.depth, self.preview = "", "", 0, ""

    @property
    def uid(self) -> uuid.UUID:
        return as_uuid(self.id)


def _key(run_id) -> str:
    """A run id in the text form the skeleton query returns. Raises ValueError for a non-UUID."""
    value = as_uuid(run_id)
    return value.hex if connection.vendor == "sqlite" else str(value)


@dataclass
class Skeleton:
    nodes: dict  # text id -> Node
    roots: list

    def get(self, run_id) -> Node | None:
        """The node of a run id given in any form (str, UUID), or None."""
        try:
            return self.nodes.get(_key(run_id))
        except ValueError:
            return None


def tree_skeleton(session: Session) -> Skeleton:
    """The shape of the session's tree: ids, parents, shared or not (one query, no message text,
    no per-row ORM conversion), children in creation order, subtree sizes, the active path."""
    qs = (
        session.visible_runs()
        .annotate(
            tid=Cast("id", TextField()), tparent=Cast("parent_run_id", TextField()),
            own=Case(When(session_id=session.pk, then=Value(1)), default=Value(0), output_field=IntegerField()),
        )
        .order_by("depth", "created_at", "id")
        .values_list("tid", "tparent", "own")
    )
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    nodes: dict = {}
    roots: list = []
    get = nodes.get
    for rid, parent, own in rows:  # parents come first: ordered by depth
        node = nodes[rid] = Node(rid, parent, not own)
        parent_node = get(parent) if parent is not None else None
        if parent_node is None:
            roots.append(node)
        else:
            parent_node.children.append(node)
    for rid, parent, _ in reversed(rows):
        if parent is not None:
            parent_node = get(parent)
            if parent_node is not None:
                parent_node.size += nodes[rid].size
    if session.active_run_id is not None:
        node = get(_key(session.active_run_id))
        if node is not None:
            node.active = True
        while node is not None:
            node.on_path = True
            node = get(node.parent_id) if node.parent_id is not None else None
    return Skeleton(nodes, roots)


@dataclass
class Item:
    """One token of the flattened tree the template renders in a single loop.

    ``kind``: ``branch`` (opens a branch: a details/summary and an ordered list of runs),
    ``end_branch``, ``node`` (a run), ``node_open`` (a run followed by its branches),
    ``end_node``, ``elided`` (a straight line of ``count`` runs from ``node``, loaded on demand),
    ``more`` (a subtree of ``count`` runs from ``node`` not shown, loaded on demand).
    """

    kind: str
    node: Node | None = None
    count: int = 0


def _main_child(node: Node) -> Node | None:
    """The child a line continues with: the one on the active path, else the newest."""
    if not node.children:
        return None
    for child in node.children:
        if child.on_path:
            return child
    return node.children[-1]


def _line(node: Node) -> list[Node]:
    """The line from ``node`` down to a leaf, following each run's main child."""
    line = [node]
    child = _main_child(node)
    while child is not None:
        line.append(child)
        child = _main_child(child)
    return line


def _side_children(line: list[Node], i: int) -> list[Node]:
    main = line[i + 1] if i + 1 < len(line) else None
    return [c for c in line[i].children if c is not main]


def _pinned(line: list[Node], keep: int, max_pins: int) -> list[int]:
    """Indexes of the runs of a line that are shown: both ends (``keep`` runs each), branch
    points, the active run and its neighbours. A line with more than ``max_pins`` of them shows the
    first ``keep`` and the ``max_pins`` nearest its end (the newest part); the runs between are
    elided (loaded on demand)."""
    last = len(line) - 1
    pins = set(range(min(keep, len(line)))) | set(range(max(0, last - keep + 1), last + 1))
    for i, node in enumerate(line):
        if node.active:
            pins |= {i - 1, i, i + 1}
        elif len(node.children) > 1:
            pins.add(i)
    ordered = sorted(p for p in pins if 0 <= p <= last)
    if len(ordered) > max_pins:
        active = {p for p in ordered if any(line[q].active for q in (p - 1, p, p + 1) if 0 <= q <= last)}
        ordered = sorted(set(ordered[:keep]) | set(ordered[-max_pins:]) | active)
    return ordered


def plan_tree(roots: list[Node], *, budget: int = 300, keep: int = 3, max_nesting: int = 12,
              max_pins: int = 60) -> list[Item]:
    """Flatten the tree below ``roots`` into items, showing about ``budget`` runs at most.

    Layout: each branch is a *line* that follows the active path (else the newest child) down to a
    leaf, so the active branch is one flat list however deep; the other children of a run on a
    line nest under it as side branches. Straight stretches of a line are elided to their ends
    (``keep`` runs each side), branch points and the active run stay visible. The active line is
    always planned; side branches then breadth-first while the budget lasts and nesting stays
    within ``max_nesting``; the rest become ``more`` items loaded on demand. Iterative, so any
    depth is fine.
    """
    lines: dict = {}
    chosen: set = set()
    used = 0
    queue: deque = deque((r, 0) for r in roots if r.on_path)
    queue.extend((r, 0) for r in roots if not r.on_path)
    while queue:
        start, level = queue.popleft()
        line = lines[start.id] = _line(start)
        pins = _pinned(line, keep, max_pins)
        cost = len(pins) + 1
        if (used + cost > budget or level > max_nesting) and not start.on_path and chosen:
            continue
        chosen.add(start.id)
        used += cost
        for i in pins:
            queue.extend((c, level + 1) for c in _side_children(line, i))

    items: list[Item] = []
    stack: list = [("line", r) for r in reversed(roots)]
    while stack:
        action = stack.pop()
        if isinstance(action, Item):
            items.append(action)
            continue
        start = action[1]
        if start.id not in chosen:
            items.append(Item("more", start, start.size))
            continue
        line = lines[start.id]
        todo: list = [Item("branch", start, start.size)]
        previous = -1
        for i in _pinned(line, keep, max_pins):
            gap = i - previous - 1
            if gap == 1:
                todo.append(Item("node", line[previous + 1]))
            elif gap > 1:
                todo.append(Item("elided", line[previous + 1], gap))
            previous = i
            side = _side_children(line, i)
            if side:
                todo.append(Item("node_open", line[i]))
                todo.extend(("line", c) for c in side)
                todo.append(Item("end_node"))
            else:
                todo.append(Item("node", line[i]))
        todo.append(Item("end_branch"))
        stack.extend(reversed(todo))
    return items


def chain_items(start: Node, count: int, *, page: int = 200) -> list[Item]:
    """``count`` runs of a line from ``start`` (an elided stretch), ``page`` at a time; runs with
    other versions get their side branches as ``more`` items (loaded on demand)."""
    items: list[Item] = []
    node = start
    shown = 0
    while node is not None and shown < min(count, page):
        main = _main_child(node)
        side = [c for c in node.children if c is not main]
        if side:
            items.append(Item("node_open", node))
            items.extend(Item("more", c, c.size) for c in side)
            items.append(Item("end_node"))
        else:
            items.append(Item("node", node))
        shown += 1
        node = main
    if node is not None and shown < count:
        items.append(Item("elided", node, count - shown))
    return items


def run_previews(run_ids, length: int = 90) -> dict:
    """``{run_id (UUID): (status, model, depth, preview)}`` of the runs ``run_ids``: the preview is
    the first ``length`` characters of the run's input, whitespace folded (one query; none for no
    ids). Cut in SQL, or after decryption when message text is encrypted at rest."""
    run_ids = list(run_ids)
    if not run_ids:
        return {}
    if encryption_enabled():  # ciphertext cannot be cut in SQL: decrypt (via the field), then cut
        inputs = dict(Message.objects.filter(run_id__in=run_ids, position=0).values_list("run_id", "content"))
        rows = [(run_id, status, model, depth, (inputs.get(run_id) or "")[:length]) for run_id, status, model, depth
                in Run.objects.filter(pk__in=run_ids).values_list("id", "status", "model", "depth")]
    else:
        rows = Run.objects.filter(pk__in=run_ids).annotate(
            p=Subquery(Message.objects.filter(run=OuterRef("pk"), position=0).annotate(p=Substr("content", 1, length))
                       .values("p")[:1])
        ).values_list("id", "status", "model", "depth", "p")
    return {run_id: (status, model, depth, " ".join((preview or "").split()))
            for run_id, status, model, depth, preview in rows}


def attach_previews(items: list[Item], length: int = 90, *, also=()) -> dict:
    """Fill in status, model, depth and preview (the first ``length`` characters of the input) of
    the runs the items show (one query). ``also``: more run ids to read in the same query; returns
    :func:`run_previews` of them all."""
    nodes = {}
    for item in items:
        if item.node is not None:
            nodes[item.node.uid] = item.node
    facts = run_previews({*nodes, *also}, length)
    for run_id, node in nodes.items():
        if run_id in facts:
            node.status, node.model, node.depth, node.preview = facts[run_id]
    return facts


# --- the sessions list ----------------------------------------------------------------------------

def with_counts(sessions):
    """Annotate ``run_count`` and ``branch_count`` (leaf runs: runs with no child in the session);
    pruned runs are not counted."""
    own = Run.objects.unpruned()
    runs = own.filter(session=OuterRef("pk")).order_by().values("session").annotate(c=Count("pk")).values("c")
    leaves = (
        own.filter(session=OuterRef("pk"))
        .filter(~Exists(own.filter(parent_run=OuterRef("pk"), session=OuterRef("session"))))
        .order_by().values("session").annotate(c=Count("pk")).values("c")
    )
    return sessions.annotate(run_count=Subquery(runs), branch_count=Subquery(leaves))


def search_sessions(sessions, query: str):
    """Sessions whose title or any of whose messages (pruned runs' left out) match ``query``.

    PostgreSQL: full-text search (``websearch_to_tsquery`` against ``to_tsvector('english', …)``
    via django.contrib.postgres.search; the messages side is served by the GIN index
    ``message_content_fts``), plus a substring match on the title. SQLite: every word must occur
    (case-insensitively) in the title or in a message.
    """
    query = " ".join((query or "").split())[:200]
    if not query:
        return sessions
    if encryption_enabled():  # message text is ciphertext in the database: titles only
        for word in query.split()[:8]:
            sessions = sessions.filter(title__icontains=word)
        return sessions
    if connection.vendor == "postgresql":
        tsquery = SearchQuery(query, config="english", search_type="websearch")
        message_hits = (
            Message.objects.filter(run__pruned_by__isnull=True)
            .annotate(v=SearchVector("content", config="english")).filter(v=tsquery)
            .values("run__session_id")
        )
        return sessions.annotate(title_v=SearchVector("title", config="english")).filter(
            Q(title_v=tsquery) | Q(title__icontains=query) | Q(pk__in=message_hits)
        )
    for word in query.split()[:8]:
        message_hits = Message.objects.filter(content__icontains=word, run__pruned_by__isnull=True).values(
            "run__session_id")
        sessions = sessions.filter(Q(title__icontains=word) | Q(pk__in=message_hits))
    return sessions
