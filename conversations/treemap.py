"""The tree map: a session's conversation tree drawn as SVG, laid out on the server.

1. The tree's skeleton (ids, parents, active path; :func:`conversations.selectors.trees.tree_skeleton`, one
   query, no message text) is reduced to the runs worth a node: roots and leaves, branch points
   (runs with other versions below them), the first run of each version, the shown run (the
   session's active run) and the boundary between a fork's shared runs and its own. Each straight
   stretch between two such runs (runs with one child whose parent has one child) becomes one
   edge labelled with the number of runs it stands for; ``expand`` names stretches to draw (by the
   run just below the stretch; up to ``EXPAND_RUNS`` of its runs, the lowest, at a time).
2. Past ``budget`` nodes (a bushy tree: thousands of versions), the nodes nearest the active path
   are drawn (breadth-first from it) and, under each drawn node, its other children are folded
   into one node standing for all their runs; ``unfold`` names runs whose children to draw first.
3. :func:`core.tidytree.tidy_layout` (Buchheim–Jünger–Leipert, linear time) places the nodes;
   roots at the top, one level per node (not per run: a collapsed stretch is one level).
4. One query reads status, model, turn number and an input excerpt of the drawn runs
   (:func:`conversations.selectors.pages.run_previews`), then the SVG is written as text (every value
   escaped): edges grouped into four ``<path>`` elements, one ``<circle>`` per node, all in one
   ``<g class="treemap-root">`` (what the script pans and zooms: the ``<svg>`` itself keeps the
   viewport's size, so a frame rasterises the visible area only).

Node markup (what ``static/arbor/treemap.js`` reads): ``<circle class="n st-<status>[ on-path]
[ active][ shared]" data-run-id="<run id>" data-l="<level>" data-d="<depth>" data-m="<model>"
data-t="<input excerpt>" [data-v="<k>/<n>"] [data-b="<branch label>"]>``, in pre-order, so a
node's parent is the last node before it one level up; a folded node is ``<circle class="n folded" data-run-id data-l
data-f="<runs>" data-k="<branches>" data-u="<run to unfold>">``. A collapsed stretch's label is
``<text class="cl" data-run-id="<run below it>" data-n="<runs>">``.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from html import escape

from django.utils.safestring import SafeString, mark_safe

from core.tidytree import tidy_layout

from .selectors.pages import run_previews
from .selectors.trees import Node, Skeleton

X_GAP = 28  # px between neighbours on one level
Y_GAP = 46  # px between levels
MARGIN = 28  # px around the drawing (room for labels on the right)
RADIUS = 6
PREVIEW_CHARS = 90  # the same excerpt as the list view's, so one query serves both
EXPAND_RUNS = 400  # runs of a collapsed stretch one expansion draws (the rest stays collapsed above them)
MAP_BUDGET = 1500  # nodes drawn before the children of nodes far from the active path are folded


@dataclass
class MapTree:
    """The reduced tree, nodes in pre-order: ``nodes[i]`` (skeleton Nodes), ``children[i]``
    (indexes), ``hidden[i]`` (runs of the straight stretch above node i), ``folded[i]`` (runs a
    folded node stands for, else 0), ``roots`` (indexes), ``stubs`` (``{i: (parent Node or None,
    branches)}`` for folded nodes: ``nodes[i]`` is then the first of the ``branches`` runs folded)."""

    nodes: list = field(default_factory=list)
    children: list = field(default_factory=list)
    hidden: list = field(default_factory=list)
    folded: list = field(default_factory=list)
    roots: list = field(default_factory=list)
    stubs: dict = field(default_factory=dict)


def _kept(skeleton: Skeleton, expand: list[Node], keep: list[Node] = ()) -> set:
    """Ids of the runs that get a node of their own (see the module's docstring). One pass over
    the parents: a run with other than one child is kept with all its children; a run with one
    child is kept with it where the fork's shared runs end. ``keep``: runs drawn as nodes whatever
    their place (the ends of provenance edges)."""
    get = skeleton.nodes.get
    kept = {root.id for root in skeleton.roots} | {node.id for node in keep}
    add = kept.add
    for node in skeleton.nodes.values():
        kids = node.children
        if len(kids) != 1:
            add(node.id)
            for child in kids:
                add(child.id)
        elif kids[0].shared != node.shared:
            add(node.id)
            add(kids[0].id)
        if node.active:
            add(node.id)
    for below in expand:  # draw the stretch above ``below``: its EXPAND_RUNS lowest runs
        node = get(below.parent_id) if below.parent_id is not None else None
        drawn = 0
        while node is not None and node.id not in kept and drawn < EXPAND_RUNS:
            add(node.id)
            drawn += 1
            node = get(node.parent_id) if node.parent_id is not None else None
    return kept


def reduce_tree(skeleton: Skeleton, expand: list[Node] = (), keep: list[Node] = ()) -> MapTree:
    """The skeleton with every straight stretch collapsed into one edge (iterative, O(runs));
    ``keep``: runs that get a node even inside a stretch."""
    kept = _kept(skeleton, list(expand), list(keep))
    tree = MapTree()
    nodes, children, hidden = tree.nodes, tree.children, tree.hidden
    stack = list(reversed(skeleton.roots))  # nodes to visit, and beside them their parents' indexes
    parents = [-1] * len(stack)
    while stack:
        node, parent = stack.pop(), parents.pop()
        count = 0
        while node.id not in kept:  # a run with one child inside a straight stretch
            count += 1
            node = node.children[0]
        i = len(nodes)
        nodes.append(node)
        children.append([])
        hidden.append(count)
        (children[parent] if parent >= 0 else tree.roots).append(i)
        if node.children:
            stack.extend(reversed(node.children))
            parents.extend([i] * len(node.children))
    tree.folded = [0] * len(nodes)
    return tree


def fold(tree: MapTree, budget: int, unfold: list[Node] = ()) -> MapTree:
    """``tree`` itself when it has at most ``budget`` nodes; else a copy that draws the nodes
    reached first — the runs named in ``unfold`` with their ancestors and children, the active path,
    then breadth-first from those — and, under each drawn node, one folded node standing for all
    its children not drawn (so at most one folded node per drawn node)."""
    n = len(tree.nodes)
    if n <= budget:
        return tree
    parent = [-1] * n
    for i, kids in enumerate(tree.children):
        for k in kids:
            parent[k] = i
    wanted = {node.id for node in unfold}
    seeds = [i for i, node in enumerate(tree.nodes) if node.id in wanted]
    seeds += [i for i, node in enumerate(tree.nodes) if node.on_path] or tree.roots[:1]
    shown = [False] * n
    queue: deque = deque()
    for i in seeds:  # the named runs first: their children are drawn before the budget runs out
        j = i
        while j >= 0 and not shown[j]:
            shown[j] = True
            queue.append(j)
            j = parent[j]
    used = sum(shown)
    while queue and used < budget:
        for k in tree.children[queue.popleft()]:
            if not shown[k] and used < budget:
                shown[k] = True
                used += 1
                queue.append(k)
    return _folded_copy(tree, shown)


def _folded_copy(tree: MapTree, shown: list[bool]) -> MapTree:
    """The nodes marked ``shown``, each followed by one folded node for its children not shown."""
    out = MapTree()

    def add(node, parent: int, hidden: int, folded: int) -> int:
        j = len(out.nodes)
        out.nodes.append(node)
        out.children.append([])
        out.hidden.append(hidden)
        out.folded.append(folded)
        (out.children[parent] if parent >= 0 else out.roots).append(j)
        return j

    stack: list = [(i, -1) for i in reversed(tree.roots)]
    while stack:
        i, parent = stack.pop()
        if isinstance(i, list):  # the children of ``parent`` not shown: one folded node for them all
            first = tree.nodes[i[0]]
            j = add(first, parent, 0, sum(tree.hidden[k] + tree.nodes[k].size for k in i))
            out.stubs[j] = (out.nodes[parent] if parent >= 0 else None, len(i))
            continue
        j = add(tree.nodes[i], parent, tree.hidden[i], 0)
        rest = [k for k in tree.children[i] if not shown[k]]
        if rest:
            stack.append((rest, j))
        stack.extend((k, j) for k in reversed(tree.children[i]) if shown[k])
    return out


def _text(node: Node) -> str:
    """A run id as text with dashes (the skeleton's ids are that already on PostgreSQL, hex on SQLite)."""
    return node.id if len(node.id) == 36 else str(uuid.UUID(node.id))


@dataclass
class TreeMap:
    svg: SafeString
    runs: int  # runs in the session's tree
    drawn: int  # nodes drawn
    width: int
    height: int


def _versions(skeleton: Skeleton, node: Node, cache: dict) -> tuple[int, int]:
    """``(k, n)``: ``node`` is version k of n of its turn (siblings in creation order). ``cache``
    keeps each parent's children's positions, so a run of many versions costs O(versions) once."""
    parent = skeleton.nodes.get(node.parent_id) if node.parent_id is not None else None
    siblings = parent.children if parent is not None else skeleton.roots
    if len(siblings) == 1:
        return 1, 1
    key = parent.id if parent is not None else None
    positions = cache.get(key)
    if positions is None:
        positions = cache[key] = {sibling.id: i for i, sibling in enumerate(siblings, 1)}
    return positions[node.id], len(siblings)


def _edge(px: int, py: int, cx: int, cy: int) -> str:
    if px == cx:
        return f"M{px} {py}V{cy}"
    my = (py + cy) // 2
    return f"M{px} {py}C{px} {my} {cx} {my} {cx} {cy}"


def _links(skeleton: Skeleton, tree: MapTree, px: list, py: list, links) -> str:
    """Provenance edges (a fused run to its sources, a merge turn to its source branch) between drawn
    nodes, dashed: ``<path class="prov">`` (``prov pruned`` when the source was pruned since)."""
    at = {node.id: i for i, node in enumerate(tree.nodes) if i not in tree.stubs}
    drawn: dict = {"": [], " pruned": []}
    for link in links or ():
        target_node, source_node = skeleton.get(link["run_id"]), skeleton.get(link["source_run_id"])
        target = at.get(target_node.id) if target_node is not None else None
        source = at.get(source_node.id) if source_node is not None else None
        if target is not None and source is not None:
            drawn[" pruned" if link["pruned"] else ""].append(
                f"M{px[source]} {py[source]}L{px[target]} {py[target]}")
    return "".join(f'<path class="prov{kind}" d="{"".join(d)}"/>' for kind, d in drawn.items() if d)


def render_svg(skeleton: Skeleton, tree: MapTree, facts: dict, names: dict | None = None,
               links: list | None = None) -> TreeMap:
    """Lay ``tree`` out and write it as an SVG element (see the module's docstring for the markup).
    ``facts``: :func:`conversations.selectors.pages.run_previews` of (at least) the drawn runs; ``names``:
    ``{run id: branch label}`` (the node's ``data-b``, which the map shows beside its turn number);
    ``links``: provenance edges (:func:`conversations.selectors.runs.provenance_edges`), drawn dashed."""
    facts = {str(run_id): value for run_id, value in facts.items()}
    names = {str(run_id): name for run_id, name in (names or {}).items()}
    x, levels = tidy_layout(tree.children, tree.roots)
    px = [round(MARGIN + v * X_GAP) for v in x]  # whole pixels: shorter, and as sharp
    py = [MARGIN + level * Y_GAP for level in levels]
    edges: dict = {"": [], " on-path": [], " collapsed": [], " collapsed on-path": []}
    labels: list[str] = []
    circles: list[str] = []
    marks: list[str] = []
    positions: dict = {}
    for i, node in enumerate(tree.nodes):
        for k in tree.children[i]:
            child = tree.nodes[k]
            kind = (" collapsed" if tree.hidden[k] else "") + (" on-path" if child.on_path else "")
            edges[kind].append(_edge(px[i], py[i], px[k], py[k]))
            if tree.hidden[k]:
                labels.append(f'<text class="cl" x="{px[k] + 5}" y="{(py[i] + py[k]) // 2 + 4}" '
                              f'data-run-id="{_text(child)}" data-n="{tree.hidden[k]}">+{tree.hidden[k]}</text>')
        if i in tree.stubs:
            circles.append(_stub(tree, i, px[i], py[i], levels[i]))
            continue
        circles.append(_circle(_versions(skeleton, node, positions), node, facts, px[i], py[i], levels[i],
                               names.get(_text(node), "")))
        if node.active:
            marks.append(f'<circle class="ring" cx="{px[i]}" cy="{py[i]}" r="{RADIUS + 5}"/>'
                         f'<text class="shown" x="{px[i] + RADIUS + 9}" y="{py[i] + 4}">shown</text>')
    width = int(MARGIN * 2 + (max(x) if x else 0) * X_GAP + 40)
    height = int(MARGIN * 2 + (max(levels) if levels else 0) * Y_GAP)
    paths = "".join(f'<path class="e{kind}" d="{"".join(d)}"/>' for kind, d in edges.items() if d) + \
        _links(skeleton, tree, px, py, links)
    runs = len(skeleton.nodes)
    label = f"Map of {runs} run{'s' if runs != 1 else ''}, drawn as {len(tree.nodes)} nodes"
    svg = (f'<svg class="treemap-svg" width="{width}" height="{height}" role="group" aria-label="{label}">'
           f'<g class="treemap-root"><g class="edges">{paths}</g>'
           f'<g class="labels">{"".join(labels)}</g><g class="marks">{"".join(marks)}</g>'
           f'<g class="nodes">{"".join(circles)}</g></g></svg>')
    return TreeMap(mark_safe(svg), runs, len(tree.nodes), width, height)  # escaped


def _circle(versions: tuple[int, int], node: Node, facts: dict, cx: int, cy: int, level: int, name: str = "") -> str:
    status, model, depth, preview = facts.get(_text(node), ("", "", 0, ""))
    classes = f"n st-{escape(status)}" + (" on-path" if node.on_path else "") + (" active" if node.active else "") + (
        " shared" if node.shared else "")
    k, n = versions
    return (f'<circle class="{classes}" cx="{cx}" cy="{cy}" r="{RADIUS}" data-run-id="{_text(node)}" '
            f'data-l="{level}" data-d="{depth}" data-m="{escape(model)}" data-t="{escape(preview)}"'
            + (f' data-v="{k}/{n}"' if n > 1 else "") + (f' data-b="{escape(name)}"' if name else "") + "/>")


def _stub(tree: MapTree, i: int, cx: int, cy: int, level: int) -> str:
    """A folded node: ``data-f`` runs in ``data-k`` branches below the run ``data-u`` (what
    ``?unfold=`` names to draw them); ``data-run-id`` is the first of those branches' runs."""
    parent, branches = tree.stubs[i]
    node = tree.nodes[i]
    key = _text(parent if parent is not None else node)
    return (f'<circle class="n folded" cx="{cx}" cy="{cy}" r="{RADIUS}" data-run-id="{_text(node)}" '
            f'data-l="{level}" data-f="{tree.folded[i]}" data-k="{branches}" data-u="{key}"/>')


def plan_map(skeleton: Skeleton, expand_ids=(), unfold_ids=(), *, budget: int = MAP_BUDGET,
             links: list | None = None) -> MapTree | None:
    """What the map draws (no query): the skeleton reduced (:func:`reduce_tree`) and folded past
    ``budget`` nodes (:func:`fold`); None for a tree without runs. ``expand_ids``: runs whose
    collapsed stretch above is drawn in full; ``unfold_ids``: runs whose children are drawn first
    (run ids in any form; unknown ones are ignored); ``links``: provenance edges, whose ends get nodes."""
    if not skeleton.nodes:
        return None
    expand = [node for node in (skeleton.get(i) for i in expand_ids) if node is not None]
    unfold = [node for node in (skeleton.get(i) for i in unfold_ids) if node is not None]
    ends = {run_id for link in links or () for run_id in (link["run_id"], link["source_run_id"])}
    keep = [node for node in (skeleton.get(i) for i in ends) if node is not None]
    return fold(reduce_tree(skeleton, expand, keep), budget, unfold)


def drawn_ids(tree: MapTree | None) -> list:
    """Run ids (UUIDs) of the nodes ``tree`` draws: what :func:`render_svg` needs facts of."""
    return [node.uid for node in tree.nodes] if tree is not None else []


def tree_map(skeleton: Skeleton, expand_ids=(), unfold_ids=(), *, budget: int = MAP_BUDGET,
             names: dict | None = None, links: list | None = None) -> TreeMap | None:
    """The map of a session's tree (``skeleton``): :func:`plan_map`, one query for the drawn runs'
    facts, :func:`render_svg` (``names``: branch labels by run id). None for a tree without runs."""
    tree = plan_map(skeleton, expand_ids, unfold_ids, budget=budget, links=links)
    if tree is None:
        return None
    return render_svg(skeleton, tree, run_previews(drawn_ids(tree), PREVIEW_CHARS), names, links)
