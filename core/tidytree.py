"""Tidy drawing of a rooted, ordered tree (or forest) in linear time: Walker's algorithm with the
corrections of Buchheim, Jünger and Leipert.

Source: C. Buchheim, M. Jünger, S. Leipert, "Improving Walker's Algorithm to Run in Linear Time",
Graph Drawing 2002, LNCS 2528, pp. 344–353 (doi:10.1007/3-540-36151-0_32), the pseudo-code of its
section 3 (FIRSTWALK, APPORTION, NEXTLEFT/NEXTRIGHT, MOVESUBTREE, EXECUTESHIFTS, ANCESTOR,
SECONDWALK), which improves J. Q. Walker II, "A node-positioning algorithm for general trees",
Software—Practice and Experience 20(7), 1990, itself a generalisation of E. M. Reingold and
J. S. Tilford, "Tidier drawings of trees", IEEE Trans. Software Eng. SE-7(2), 1981.

What the drawing guarantees (the aesthetic rules the paper states; the unit tests check them):

* every node of level ``k`` is drawn at ``y = k`` (roots at 0);
* nodes of one level keep their left-to-right order and stand at least ``distance`` apart;
* a parent is centred above its first and last child;
* a subtree is drawn the same wherever it occurs, and a tree's mirror image is drawn mirrored;
* small subtrees between large ones are spread out evenly.

Differences from the paper, none of which changes a result: nodes are integers indexing flat lists
(no node objects), both walks are iterative (a conversation may be thousands of runs deep, far past
Python's recursion limit), and a forest is laid out as the children of a virtual root that is then
dropped. The cost is O(n) time and memory for n nodes; no Django, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence


class _Walker:
    """State of one layout: flat lists indexed by node, the virtual root being the last index."""

    def __init__(self, children: Sequence[Sequence[int]], roots: Sequence[int], distance: float):
        n = len(children)
        self.root = n
        self.kids: list[Sequence[int]] = [*children, list(roots)]
        self.distance = float(distance)
        size = n + 1
        self.parent = [-1] * size
        self.number = [0] * size  # index among siblings, 0-based
        for v, kids in enumerate(self.kids):
            for i, w in enumerate(kids):
                if self.parent[w] >= 0 or w == self.root:
                    raise ValueError(f"not a forest: node {w} has two parents (or is a root and a child)")
                self.parent[w] = v
                self.number[w] = i
        self.prelim = [0.0] * size
        self.mod = [0.0] * size
        self.change = [0.0] * size
        self.shift = [0.0] * size
        self.thread = [-1] * size
        self.ancestor = list(range(size))
        self.level = [0] * size

    def next_left(self, v: int) -> int:
        kids = self.kids[v]
        return kids[0] if kids else self.thread[v]

    def next_right(self, v: int) -> int:
        kids = self.kids[v]
        return kids[-1] if kids else self.thread[v]

    def first_walk(self) -> int:
        """FIRSTWALK as a post-order loop: a node is placed once all its children are, and then
        apportioned against its left siblings before the next sibling's subtree is walked.
        Returns the number of nodes placed, the virtual root included."""
        kids, parent, level = self.kids, self.parent, self.level
        placed = 0
        default_ancestor = [-1] * len(kids)
        next_child = [0] * len(kids)
        stack = [self.root]
        while stack:
            v = stack[-1]
            i = next_child[v]
            if i < len(kids[v]):
                if i == 0:
                    default_ancestor[v] = kids[v][0]
                next_child[v] = i + 1
                w = kids[v][i]
                level[w] = level[v] + 1
                stack.append(w)
                continue
            stack.pop()
            placed += 1
            self.place(v)
            p = parent[v]
            if p >= 0:
                default_ancestor[p] = self.apportion(v, default_ancestor[p])
        return placed

    def place(self, v: int) -> None:
        """The body of FIRSTWALK(v) after its children: a preliminary x, and for an inner node the
        modifier that centres it over its children (EXECUTESHIFTS first)."""
        left = self.kids[self.parent[v]][self.number[v] - 1] if self.number[v] > 0 else -1
        kids = self.kids[v]
        if not kids:
            self.prelim[v] = self.prelim[left] + self.distance if left >= 0 else 0.0
            return
        self.execute_shifts(v)
        midpoint = (self.prelim[kids[0]] + self.prelim[kids[-1]]) / 2
        if left >= 0:
            self.prelim[v] = self.prelim[left] + self.distance
            self.mod[v] = self.prelim[v] - midpoint
        else:
            self.prelim[v] = midpoint

    def apportion(self, v: int, default_ancestor: int) -> int:
        """APPORTION: push the subtree of ``v`` right until it clears the subtrees of its left
        siblings on every level (following the contours, threads where a contour ends), spreading
        the shift over the subtrees in between; returns the new default ancestor."""
        if self.number[v] == 0:
            return default_ancestor
        p = self.parent[v]
        prelim, mod, ancestor = self.prelim, self.mod, self.ancestor
        vip = vop = v  # inside and outside right contours (the paper's v_i^+, v_o^+)
        vim = self.kids[p][self.number[v] - 1]  # inside left contour: the left sibling's subtree
        vom = self.kids[p][0]  # outside left contour: the leftmost sibling's subtree
        sip = sop = mod[vip]
        sim, som = mod[vim], mod[vom]
        while True:
            nr, nl = self.next_right(vim), self.next_left(vip)
            if nr < 0 or nl < 0:
                break
            vim, vip = nr, nl
            vom, vop = self.next_left(vom), self.next_right(vop)
            ancestor[vop] = v
            shift = (prelim[vim] + sim) - (prelim[vip] + sip) + self.distance
            if shift > 0:
                a = ancestor[vim] if self.parent[ancestor[vim]] == p else default_ancestor
                self.move_subtree(a, v, shift)
                sip += shift
                sop += shift
            sim += mod[vim]
            sip += mod[vip]
            som += mod[vom]
            sop += mod[vop]
        if self.next_right(vim) >= 0 and self.next_right(vop) < 0:
            self.thread[vop] = self.next_right(vim)
            mod[vop] += sim - sop
        if self.next_left(vip) >= 0 and self.next_left(vom) < 0:
            self.thread[vom] = self.next_left(vip)
            mod[vom] += sip - som
            default_ancestor = v
        return default_ancestor

    def move_subtree(self, wl: int, wr: int, shift: float) -> None:
        """MOVESUBTREE: shift ``wr``'s subtree right now; record the share of the siblings between
        ``wl`` and ``wr`` for EXECUTESHIFTS."""
        subtrees = self.number[wr] - self.number[wl]
        self.change[wr] -= shift / subtrees
        self.shift[wr] += shift
        self.change[wl] += shift / subtrees
        self.prelim[wr] += shift
        self.mod[wr] += shift

    def execute_shifts(self, v: int) -> None:
        """EXECUTESHIFTS: apply the recorded shifts to ``v``'s children, right to left."""
        shift = change = 0.0
        for w in reversed(self.kids[v]):
            self.prelim[w] += shift
            self.mod[w] += shift
            change += self.change[w]
            shift += self.shift[w] + change

    def second_walk(self) -> list[float]:
        """SECONDWALK as a pre-order loop: x = preliminary x + the modifiers of all ancestors."""
        x = [0.0] * len(self.kids)
        stack = [(self.root, 0.0)]
        while stack:
            v, m = stack.pop()
            x[v] = self.prelim[v] + m
            m += self.mod[v]
            stack.extend((w, m) for w in self.kids[v])
        return x


def tidy_layout(children: Sequence[Sequence[int]], roots: Sequence[int] | None = None,
                distance: float = 1.0) -> tuple[list[float], list[int]]:
    """Lay out a forest tidily: ``(x, level)``, two lists indexed like ``children``.

    ``children[v]`` lists the children of node ``v`` (nodes are ``0 … n-1``) in drawing order,
    left to right; ``roots`` the roots in order (default: every node that is nobody's child, in
    index order). ``x`` is in the unit of ``distance`` (the least gap between neighbours on one
    level; fractions occur), shifted so that the leftmost node has ``x == 0``; ``level`` is the
    depth below the node's root (0 for roots). Raises ValueError when the input is not a forest:
    a node with two parents (or both a root and a child), or nodes no root reaches (a cycle).
    """
    n = len(children)
    if roots is None:
        is_child = [False] * n
        for kids in children:
            for w in kids:
                is_child[w] = True
        roots = [v for v in range(n) if not is_child[v]]
    walker = _Walker(children, roots, distance)
    if walker.first_walk() != n + 1:
        raise ValueError("not a forest: some nodes cannot be reached from the roots (a cycle)")
    x = walker.second_walk()
    del x[-1]
    left = min(x) if x else 0.0
    return [v - left for v in x], [level - 1 for level in walker.level[:n]]
