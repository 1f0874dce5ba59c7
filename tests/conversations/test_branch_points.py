"""Branch points of the shown branch (conversations.paths.branch_points) and their panel and markers
in the chat: positions as the sibling navigator counts them, links that work without JavaScript,
the out-of-band refresh after an htmx swap, query counts that do not grow with depth."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import services
from conversations.models import Session
from conversations.selectors import paths
from tests.support.factories import RunFactory, SessionFactory, UserFactory, build_chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def me(client):
    user = UserFactory()
    client.force_login(user)
    return user


def _talk(owner, depth=12):
    """A line of ``depth`` runs; turn 3 (runs[2]) has 3 versions, the shown one the 2nd; turn 8 has 2,
    the shown one the 1st; a version of turn 11 hangs off another branch (not on the shown path)."""
    session = SessionFactory(owner=owner)
    runs = build_chain(session, depth)
    first = RunFactory(session=session, parent_run=runs[1], turn=("first try of turn 3", "a"))
    # runs[2] must be the 2nd of 3 by creation: move the first try before it
    first.created_at = runs[2].created_at.replace(year=2000)
    first.save(update_fields=["created_at"])
    RunFactory(session=session, parent_run=runs[1], turn=("third try of turn 3", "c"))
    RunFactory(session=session, parent_run=runs[6], turn=("another turn 8", "b"))
    RunFactory(session=session, parent_run=first, turn=("off the shown path", "x"))
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
    session.refresh_from_db()
    return session, runs


def test_branch_points_of_the_shown_path(me):
    session, runs = _talk(me)
    with CaptureQueriesContext(connection) as queries:
        points = paths.branch_points(session, session.active_run_id)
    assert len(queries) == 2
    assert [(p.run_id, p.turn, p.index, p.count) for p in points] == [(runs[2].pk, 3, 2, 3), (runs[7].pk, 8, 1, 2)]
    assert points[0].below == runs[3].pk and points[0].from_leaf == 9
    assert points[0].preview == "question 2"
    # the sibling navigator counts the same way
    positions = paths.sibling_positions(session, [runs[2], runs[7]])
    assert [positions[r.pk][:2] for r in (runs[2], runs[7])] == [(2, 3), (1, 2)]


def test_roots_with_versions_and_the_leaf_itself(me):
    session = SessionFactory(owner=me)
    root = RunFactory(session=session, turn=("hello", "hi"))
    RunFactory(session=session, turn=("hello again", "hi"))  # another version of the first turn
    leaf = RunFactory(session=session, parent_run=root)
    RunFactory(session=session, parent_run=root)  # the leaf has a sibling too
    points = paths.branch_points(session, leaf.pk)
    assert [(p.turn, p.index, p.count) for p in points] == [(1, 1, 2), (2, 1, 2)]
    assert points[-1].below is None and points[-1].from_leaf == 0
    assert paths.branch_points(session, None) == []


def test_a_fork_counts_only_its_own_tree(me):
    source = SessionFactory(owner=me)
    runs = build_chain(source, 5)
    RunFactory(session=source, parent_run=runs[1])  # a version in the source only
    fork = services.session_fork(run=runs[3], owner=me)
    mine = build_chain(fork, 2, parent=runs[3])
    RunFactory(session=fork, parent_run=runs[3], turn=("my other version", "y"))
    points = paths.branch_points(fork, mine[-1].pk)
    assert [(p.run_id, p.index, p.count) for p in points] == [(mine[0].pk, 1, 2)]


def test_panel_and_markers_in_the_chat(me, client):
    session, runs = _talk(me)
    html = client.get(f"/s/{session.pk}/").content.decode()
    panel = re.search(r'<nav id="branch-points".*?</nav>', html, re.S).group(0)
    entries = re.findall(r'<li id="bp-([0-9a-f-]+)"><a href="([^"]+)"', panel)
    assert [e[0] for e in entries] == [str(runs[2].pk), str(runs[7].pk)]
    assert entries[0][1] == f"/s/{session.pk}/?at={runs[2].pk}#turn-{runs[2].pk}"
    assert "Turn 3" in panel and ">2/3<" in panel and "question 2" in panel and ">1/2<" in panel
    markers = re.findall(r'<a class="bp-marker" href="#bp-([0-9a-f-]+)"', html)
    assert markers == [str(runs[2].pk), str(runs[7].pk)]
    assert 'id="bp-keys"' in html and "branchpoints.js" in html
    # the panel's link shows that turn, without JavaScript
    turn = client.get(entries[0][1].split("#")[0]).content.decode()
    assert f'id="turn-{runs[2].pk}"' in turn


def test_far_branch_points_link_to_the_page_of_older_turns(me, client):
    session = SessionFactory(owner=me)
    runs = build_chain(session, 400)
    RunFactory(session=session, parent_run=runs[9])
    RunFactory(session=session, parent_run=runs[389])
    Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
    html = client.get(f"/s/{session.pk}/").content.decode()
    links = dict(re.findall(r'<li id="bp-([0-9a-f-]+)"><a href="([^"]+)"', html))
    far = links[str(runs[10].pk)].replace("&amp;", "&")
    assert far == f"/s/{session.pk}/older?before={runs[11].pk}#turn-{runs[10].pk}"
    assert links[str(runs[390].pk)].startswith(f"/s/{session.pk}/?at=")
    older = client.get(far.split("#")[0]).content.decode()
    assert f'id="turn-{runs[10].pk}"' in older  # the turn is on the page the link opens


def test_an_htmx_swap_of_the_thread_refreshes_the_panel_out_of_band(me, client):
    session, runs = _talk(me)
    other = session.runs.get(parent_run=runs[6], depth=7, messages__content="another turn 8")
    part = client.post(f"/s/{session.pk}/runs/{other.pk}/open", headers={"HX-Request": "true"}).content.decode()
    panel = re.search(r'<nav id="branch-points"[^>]*hx-swap-oob="true".*?</nav>', part, re.S).group(0)
    assert f'id="bp-{other.pk}"' in panel and ">2/2<" in panel
    assert "bp-keys" not in part  # the keys and scripts are not sent again
    full = client.get(f"/s/{session.pk}/").content.decode()
    assert full.count('id="branch-points"') == 1 and "hx-swap-oob" not in full.split('id="branch-points"')[0][-200:]


def test_query_count_does_not_grow_with_depth(me, client):
    counts = []
    for depth in (12, 600):
        session = SessionFactory(owner=me)
        runs = build_chain(session, depth)
        for run in runs[1::5]:
            RunFactory(session=session, parent_run=run.parent_run)
        Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
        with CaptureQueriesContext(connection) as queries:
            html = client.get(f"/s/{session.pk}/").content.decode()
        counts.append(len(queries))
        assert html.count('<li id="bp-') == len(runs[1::5])
    assert counts[0] == counts[1]
