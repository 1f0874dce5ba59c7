"""The tree map (conversations/treemap.py): which runs get a node, collapsed straight stretches and
their expansion, folding past the budget, the SVG's markup, query counts and permissions."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import services, treemap
from conversations.models import Run, RunStatus, Session
from conversations.selectors import trees
from tests.support.factories import RunFactory, SessionFactory, UserFactory, build_chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def me(client):
    user = UserFactory()
    client.force_login(user)
    return user


def _trip(owner) -> tuple[Session, list[Run], dict]:
    """A 30-run line; at runs[3] two other versions (one failed, one with a child), at runs[7] one."""
    session = SessionFactory(owner=owner, title="Planning a trip")
    runs = build_chain(session, 30)
    alt = RunFactory(session=session, parent_run=runs[3], turn=("What about the train?", "Trains are nice."))
    alt_child = RunFactory(session=session, parent_run=alt, turn=("Which line?", "The coastal one."))
    failed = RunFactory(session=session, parent_run=runs[3], status=RunStatus.FAILED, turn=("By bike?", None))
    short = RunFactory(session=session, parent_run=runs[7], turn=("Shorter please", "OK."))
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
    session.refresh_from_db()
    return session, runs, {"alt": alt, "alt_child": alt_child, "failed": failed, "short": short}


def _ids(tree) -> list:
    """Runs with a node of their own (folded nodes left out)."""
    return [node.uid for i, node in enumerate(tree.nodes) if i not in tree.stubs]


def _nodes(svg: str) -> list[dict]:
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', m)) for m in re.findall(r"<circle (class=\"n [^>]*)/>", svg)]


def test_straight_stretches_collapse_into_one_edge(me):
    session, runs, other = _trip(me)
    tree = treemap.reduce_tree(trees.tree_skeleton(session))
    ids = _ids(tree)
    # roots, branch points, first runs of versions, leaves, the shown run: nothing else
    expected = [runs[0], runs[3], runs[4], runs[7], runs[8], runs[29], other["short"], other["alt"],
                other["alt_child"], other["failed"]]
    assert sorted(map(str, ids)) == sorted(str(r.pk) for r in expected)
    hidden = {str(node.uid): tree.hidden[i] for i, node in enumerate(tree.nodes)}
    assert hidden[str(runs[3].pk)] == 2  # runs[1], runs[2]
    assert hidden[str(runs[7].pk)] == 2  # runs[5], runs[6]
    assert hidden[str(runs[29].pk)] == 20  # runs[9] … runs[28]
    assert hidden[str(other["alt_child"].pk)] == 0
    assert sum(tree.hidden) + len(tree.nodes) == len(runs) + 4  # every run is drawn or counted once
    # children in creation order: runs[4] (the main line) before the versions made later
    i3 = ids.index(runs[3].pk)
    assert [tree.nodes[k].uid for k in tree.children[i3]] == [runs[4].pk, other["alt"].pk, other["failed"].pk]


def test_expand_draws_a_stretch_in_full(me):
    session, runs, _ = _trip(me)
    skeleton = trees.tree_skeleton(session)
    tree = treemap.reduce_tree(skeleton, [skeleton.get(runs[29].pk)])
    ids = _ids(tree)
    assert all(r.pk in ids for r in runs[8:])
    assert tree.hidden[ids.index(runs[29].pk)] == 0
    assert tree.hidden[ids.index(runs[3].pk)] == 2  # other stretches stay collapsed


def test_a_deep_straight_branch_is_two_nodes_and_one_edge(me):
    session = SessionFactory(owner=me)
    runs = build_chain(session, 3000)
    skeleton = trees.tree_skeleton(session)
    tree = treemap.reduce_tree(skeleton)
    assert _ids(tree) == [runs[0].pk, runs[-1].pk] and tree.hidden == [0, 2998]
    # expanding draws the lowest EXPAND_RUNS runs of the stretch; the rest stays one edge above them
    tree = treemap.reduce_tree(skeleton, [skeleton.get(runs[-1].pk)])
    n = treemap.EXPAND_RUNS
    assert _ids(tree) == [runs[0].pk] + [r.pk for r in runs[-1 - n:]]
    assert tree.hidden[:2] == [0, 2998 - n] and not any(tree.hidden[2:])


def test_fold_keeps_the_active_path_and_unfolds_on_demand(me, client):
    """Past the budget, the nodes nearest the active path are drawn and the other children of a drawn
    node are folded into one node; ?unfold= draws them."""
    session = SessionFactory(owner=me)
    runs = build_chain(session, 40)
    sides = [build_chain(session, 1, parent=run)[0] for run in runs[:-1]]  # a version at every turn
    bushes = [RunFactory(session=session, parent_run=sides[30]) for _ in range(30)]
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
    session.refresh_from_db()
    skeleton = trees.tree_skeleton(session)
    full = treemap.reduce_tree(skeleton)
    assert len(full.nodes) == 40 + 39 + 30
    tree = treemap.fold(full, 60)
    ids = _ids(tree)
    assert all(r.pk in ids for r in runs)  # the active path is always drawn
    assert sides[0].pk in ids and sides[19].pk in ids  # then breadth-first from the path, top first
    stubs = {tree.stubs[i][0].uid: (tree.folded[i], tree.stubs[i][1]) for i in tree.stubs}
    assert stubs[runs[25].pk] == (1, 1) and stubs[runs[30].pk] == (31, 1)  # sides[30] and its 30 children
    assert len(tree.nodes) == 60 + len(stubs)
    assert all(b.pk not in ids for b in bushes)
    unfolded = treemap.fold(full, 75, [skeleton.get(sides[30].pk)])  # 40 on the path, sides[30], its 30 children
    assert all(b.pk in _ids(unfolded) for b in bushes)
    assert sides[20].pk not in _ids(unfolded)  # what was unfolded came first
    # through the page: folded nodes carry what the script needs to unfold them
    svg = client.get(f"/s/{session.pk}/tree/map").content.decode()
    assert 'class="n folded"' not in svg  # 109 nodes are well within the real budget
    folded = _nodes(treemap.tree_map(skeleton, budget=60).svg)
    stub = next(n for n in folded if n.get("data-u") == str(runs[30].pk))
    assert stub["class"] == "n folded" and stub["data-f"] == "31" and stub["data-k"] == "1"


def test_svg_marks_status_path_shown_run_and_versions(me, client):
    session, runs, other = _trip(me)
    html = client.get(f"/s/{session.pk}/tree/").content.decode()
    svg = re.search(r"<svg class=\"treemap-svg\".*?</svg>", html, re.S).group(0)
    nodes = {n["data-run-id"]: n for n in _nodes(svg)}
    assert len(nodes) == 10
    assert "active" in nodes[str(runs[29].pk)]["class"]
    assert 'class="ring"' in svg and ">shown</text>" in svg
    assert "st-failed" in nodes[str(other["failed"].pk)]["class"]
    assert "on-path" in nodes[str(runs[3].pk)]["class"] and "on-path" not in nodes[str(other["alt"].pk)]["class"]
    assert nodes[str(other["alt"].pk)]["data-v"] == "2/3" and nodes[str(runs[4].pk)]["data-v"] == "1/3"
    assert nodes[str(other["alt"].pk)]["data-t"] == "What about the train?"
    assert nodes[str(runs[29].pk)]["data-d"] == "29"
    assert re.search(rf'<text class="cl"[^>]*data-run-id="{runs[29].pk}" data-n="20">\+20</text>', svg)
    assert re.search(r'<path class="e collapsed on-path" d="M', svg)
    # levels in pre-order: the root is level 0 and each child one below its parent
    assert nodes[str(runs[0].pk)]["data-l"] == "0" and nodes[str(runs[3].pk)]["data-l"] == "1"
    assert 'data-open-url="/s/' in html and "00000000-0000-4000-8000-000000000000/open" in html


def test_previews_are_escaped(me, client):
    session = SessionFactory(owner=me)
    RunFactory(session=session, turn=('<script>alert("x")</script> & more', "ok"))
    html = client.get(f"/s/{session.pk}/tree/map").content.decode()
    assert "<script>" not in html
    assert 'data-t="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more"' in html


def test_map_query_counts_do_not_grow_with_run_count(me, client):
    small, big = SessionFactory(owner=me), SessionFactory(owner=me)
    for session, depth in ((small, 10), (big, 900)):
        runs = build_chain(session, depth)
        for run in runs[1::3]:
            RunFactory(session=session, parent_run=run.parent_run)
    counts = []
    for session in (small, big):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/s/{session.pk}/tree/").status_code == 200
        counts.append(len(queries))
        with CaptureQueriesContext(connection) as fragment:
            response = client.get(f"/s/{session.pk}/tree/map", headers={"HX-Request": "true"})
        assert response.status_code == 200 and "<html" not in response.content.decode()
        # login session and user, the session, skeleton, facts of the drawn runs, branch labels,
        # provenance edges (fused and merged runs, drawn dashed)
        assert len(fragment) <= 7
    assert counts[0] == counts[1]
    assert counts[1] <= 9  # the map shares the skeleton and the previews query with the list


def test_fragment_expands_stretches(me, client):
    session, runs, _ = _trip(me)
    before = client.get(f"/s/{session.pk}/tree/map").content.decode()
    after = client.get(f"/s/{session.pk}/tree/map", {"expand": f"{runs[29].pk},nope,{runs[3].pk}"}).content.decode()
    assert len(_nodes(before)) == 10 and len(_nodes(after)) == 10 + 20 + 2
    page = client.get(f"/s/{session.pk}/tree/", {"expand": str(runs[29].pk)}).content.decode()
    assert len(_nodes(page)) == 30  # the page itself takes ?expand= too (a reload keeps the expansion)


def test_fork_shows_shared_runs_as_shared(me, client):
    source = SessionFactory(owner=me)
    runs = build_chain(source, 6)
    fork = services.session_fork(run=runs[2], owner=me)
    mine = build_chain(fork, 3, parent=runs[2])
    Session.objects.filter(pk=fork.pk).update(active_run=mine[-1])
    nodes = {n["data-run-id"]: n for n in _nodes(client.get(f"/s/{fork.pk}/tree/map").content.decode())}
    assert "shared" in nodes[str(runs[0].pk)]["class"] and "shared" in nodes[str(runs[2].pk)]["class"]
    assert "shared" not in nodes[str(mine[0].pk)]["class"]  # the first own run after the fork point
    assert str(runs[3].pk) not in nodes  # the source's own continuation is not part of the fork's tree


def test_empty_session_has_no_map(me, client):
    session = SessionFactory(owner=me)
    html = client.get(f"/s/{session.pk}/tree/").content.decode()
    assert "treemap-svg" not in html and "0 runs" in html
    assert client.get(f"/s/{session.pk}/tree/map").status_code == 200


def test_another_users_map_is_404(client):
    session = SessionFactory(owner=UserFactory())
    build_chain(session, 2)
    client.force_login(UserFactory())
    assert client.get(f"/s/{session.pk}/tree/map").status_code == 404


def test_nodes_carry_their_branch_label(me, client):
    """A labelled run's node has ``data-b`` (the map writes it beside the turn number), escaped."""
    from branches import services as branches

    session, runs, _ = _trip(me)
    branches.label_create(session=session, run=runs[-1], name='plan <b> & "more"')
    html = client.get(f"/s/{session.pk}/tree/map").content.decode()
    assert f'data-run-id="{runs[-1].pk}"' in html
    assert 'data-b="plan &lt;b&gt; &amp; &quot;more&quot;"' in html
    assert html.count("data-b=") == 1
