"""core.tidytree: the tidy-tree layout (Buchheim, Jünger, Leipert 2002) checked against the rules the
paper states, on hand-made trees with known drawings and on many random trees."""

from __future__ import annotations

import random

import pytest

from core.tidytree import tidy_layout

EPS = 1e-9


@pytest.fixture(autouse=True)
def _model_endpoint():
    """Overrides tests/conftest.py's autouse fixture: pure functions, no model server needed."""


def random_tree(rng: random.Random, n: int, max_kids: int = 4) -> list[list[int]]:
    """A random tree of ``n`` nodes rooted at 0 (each new node hangs under a random earlier one,
    biased towards recent ones so that trees are deep as well as bushy)."""
    children: list[list[int]] = [[] for _ in range(n)]
    for v in range(1, n):
        while True:
            p = max(0, v - 1 - int(rng.expovariate(0.3))) if rng.random() < 0.7 else rng.randrange(v)
            if len(children[p]) < max_kids:
                break
        children[p].append(v)
    for kids in children:
        rng.shuffle(kids)
    return children


def rows(children, levels, x):
    """Nodes of each level in left-to-right order of the tree (a breadth-first walk keeps it)."""
    by_level: dict[int, list[int]] = {}
    roots = [v for v in range(len(children)) if levels[v] == 0]
    queue = list(roots)
    for v in queue:
        by_level.setdefault(levels[v], []).append(v)
        queue.extend(children[v])
    return by_level


def check_tidy(children, x, levels, distance=1.0):
    for row in rows(children, levels, x).values():
        for a, b in zip(row, row[1:], strict=False):
            assert x[b] - x[a] >= distance - EPS, (a, b, x[a], x[b])
    for v, kids in enumerate(children):
        if kids:
            assert x[v] == pytest.approx((x[kids[0]] + x[kids[-1]]) / 2), v
            for w in kids:
                assert levels[w] == levels[v] + 1
    assert min(x) == pytest.approx(0.0)


def test_known_drawings():
    # a root and three leaves
    assert tidy_layout([[1, 2, 3], [], [], []]) == ([1.0, 0.0, 1.0, 2.0], [0, 1, 1, 1])
    # a chain is a vertical line
    assert tidy_layout([[1], [2], []]) == ([0.0, 0.0, 0.0], [0, 1, 2])
    # a forest: roots side by side
    assert tidy_layout([[], []]) == ([0.0, 1.0], [0, 0])
    # subtrees of 3 and 2 leaves: leaves packed 0..4, parents centred, the root centred over them
    x, levels = tidy_layout([[1, 2], [3, 4, 5], [6, 7], [], [], [], [], []])
    assert x == [2.25, 1.0, 3.5, 0.0, 1.0, 2.0, 3.0, 4.0]
    assert levels == [0, 1, 1, 2, 2, 2, 2, 2]
    assert tidy_layout([]) == ([], [])


def test_distance_scales_the_drawing():
    children = random_tree(random.Random(7), 60)
    x1, l1 = tidy_layout(children)
    x3, l3 = tidy_layout(children, distance=3.0)
    assert l1 == l3
    assert x3 == pytest.approx([3 * v for v in x1])


def test_small_subtrees_between_large_ones_are_spread_evenly():
    """Walker's improvement over Reingold–Tilford (the paper's figure 2): two deep, wide subtrees with
    three leaves between them; the gap left by the wide bottom levels is shared out equally."""
    def wide(first):  # a node with a chain below that fans out into 6 leaves at the bottom
        return {first: [first + 1], first + 1: [first + 2], first + 2: list(range(first + 3, first + 9))}

    spec = {0: [1, 10, 11, 12, 13]}
    spec.update(wide(1))
    spec.update(wide(13))
    n = 22
    children = [spec.get(v, []) for v in range(n)]
    x, levels = tidy_layout(children)
    check_tidy(children, x, levels)
    middle = [x[1], x[10], x[11], x[12], x[13]]
    gaps = [b - a for a, b in zip(middle, middle[1:], strict=False)]
    assert gaps == pytest.approx([gaps[0]] * 4)
    assert gaps[0] > 1.0  # the small ones were pulled apart, not left packed on one side


@pytest.mark.parametrize("seed", range(40))
def test_random_trees_are_tidy_and_mirror_symmetric(seed):
    rng = random.Random(seed)
    n = rng.choice([2, 5, 20, 100, 400])
    children = random_tree(rng, n)
    x, levels = tidy_layout(children)
    check_tidy(children, x, levels)
    # The mirror image (children reversed) is drawn as the mirror image.
    mx, mlevels = tidy_layout([list(reversed(k)) for k in children])
    width = max(x)
    assert mlevels == levels
    assert mx == pytest.approx([width - v for v in x])


def test_a_subtree_is_drawn_the_same_wherever_it_stands():
    rng = random.Random(3)
    sub = random_tree(rng, 30)

    def graft(children, at):
        base = len(children)
        children[at].append(base)
        children.extend([[base + w for w in kids] for kids in sub])
        return base

    children: list[list[int]] = [[1, 2, 3], [], [4], [], []]
    a = graft(children, 1)
    b = graft(children, 4)
    x, levels = tidy_layout(children)
    check_tidy(children, x, levels)
    shape_a = [x[a + i] - x[a] for i in range(len(sub))]
    shape_b = [x[b + i] - x[b] for i in range(len(sub))]
    assert shape_a == pytest.approx(shape_b)


def test_deep_trees_need_no_recursion():
    """A branch 20,000 runs deep with a side branch every 10 runs (far past the recursion limit)."""
    n_main = 20_000
    children: list[list[int]] = [[i + 1] if i + 1 < n_main else [] for i in range(n_main)]
    for i in range(0, n_main, 10):
        leaf = len(children)
        children.append([])
        children[i].append(leaf)
    x, levels = tidy_layout(children)
    check_tidy(children, x, levels)
    assert max(levels) == n_main - 1


def test_a_forest_of_given_roots_in_the_given_order():
    children = [[], [2], [], []]
    x, levels = tidy_layout(children, roots=[3, 1, 0])
    assert levels == [0, 0, 1, 0]
    assert x[3] < x[1] < x[0]


@pytest.mark.parametrize("children, roots", [
    ([[1], [0]], None),  # a cycle: no root reaches it
    ([[1], [2], [1]], [0]),  # node 1 has two parents
    ([[1], []], [0, 1]),  # node 1 is a root and a child
    ([[0]], [0]),
])
def test_not_a_forest(children, roots):
    with pytest.raises(ValueError, match="not a forest"):
        tidy_layout(children, roots)
