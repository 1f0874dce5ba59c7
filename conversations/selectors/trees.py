"""Reads of a session's whole tree: its skeleton (id, parent, status, model: no message text) in one
query, and the plan of what the tree view shows within a node budget (in Python, no query)."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass

from django.db import connection
from django.db.models import Case, IntegerField, TextField, Value, When
from django.db.models.functions import Cast

from core.ids import as_uuid

from ..models import BranchLabel, Session


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


def tree_rows(session: Session) -> list[dict]:
    """Every run of ``session``'s tree (a fork's shared ancestors included) as
    ``{"id", "parent_run_id", "status", "depth", "created_at", "session_id"}``, by depth then age."""
    return list(session.visible_runs().order_by("depth", "created_at").values(
        "id", "parent_run_id", "status", "depth", "created_at", "session_id",
    ))


def branch_names(session: Session) -> dict:
    """``{run id: the first (oldest) branch label on it}`` of the session's visible labels, for the
    tree map's node labels: one query."""
    names: dict = {}
    labels = BranchLabel.objects.filter(session=session).visible().order_by("created_at", "name")
    for run_id, name in labels.values_list("run_id", "name"):
        names.setdefault(run_id, name)
    return names
