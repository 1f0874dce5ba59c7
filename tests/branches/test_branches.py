"""Branch tools (issue 13) through the services, the JSON API and the pages (Django's test client):
named branches, the branch diff, prune with undo, read-only share links; ownership (404 for another
user's runs and labels) and the audit log."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.core import signing
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from archive import exporters
from audit.models import AuditLog
from branches import selectors as branch_reads
from branches import services as branch_tools
from conversations import services
from conversations.models import BranchLabel, BranchShare, Prune, Run, RunStatus, Session
from conversations.selectors import pages, paths
from core.errors import Conflict, NotFound
from tests.support.factories import ComparisonFactory, RunFactory, SessionFactory, UserFactory, build_chain

pytestmark = pytest.mark.django_db


def post_json(client, url, data, method="post"):
    return getattr(client, method)(url, data=json.dumps(data), content_type="application/json")


@pytest.fixture
def tree(user):
    """A session: a main line of 6 turns, and a side branch of 3 turns below turn 3 (index 2)."""
    session = SessionFactory(owner=user, title="Trip")
    main = build_chain(session, 6)
    side = [RunFactory(session=session, parent_run=main[2], turn=("go by train?", "Trains are slow but nice."))]
    side.append(RunFactory(session=session, parent_run=side[0], turn=("which line?", "The coastal line.")))
    side.append(RunFactory(session=session, parent_run=side[1], turn=("and tickets?", "Book early.")))
    Session.objects.filter(pk=session.pk).update(active_run=main[-1])
    session.refresh_from_db()
    return {"session": session, "main": main, "side": side}


# --- labels ---------------------------------------------------------------------------------------

def test_labels_api_list_create_rename_delete(api, tree):
    session, main = tree["session"], tree["main"]
    url = f"/api/sessions/{session.pk}/labels"
    created = post_json(api, url, {"run_id": str(main[4].pk), "name": "  draft B "})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["name"] == "draft B" and body["run_id"] == str(main[4].pk) and body["depth"] == 4
    assert post_json(api, url, {"run_id": str(tree["side"][2].pk), "name": "the good one"}).status_code == 201
    assert [x["name"] for x in api.get(url).json()] == ["draft B", "the good one"]
    assert post_json(api, url, {"run_id": str(main[1].pk), "name": "draft B"}).status_code == 409
    assert post_json(api, url, {"run_id": str(main[1].pk), "name": ""}).status_code == 400
    assert post_json(api, url, {"run_id": str(main[1].pk), "name": "x" * 61}).status_code == 400
    assert post_json(api, url, {"run_id": str(main[1].pk), "name": "a\x00b"}).status_code == 400
    renamed = post_json(api, f"{url}/{body['id']}", {"name": "draft C"}, method="patch")
    assert renamed.status_code == 200 and renamed.json()["name"] == "draft C"
    assert post_json(api, f"{url}/{body['id']}", {"name": "the good one"}, method="patch").status_code == 409
    assert api.delete(f"{url}/{body['id']}").status_code == 204
    assert [x["name"] for x in api.get(url).json()] == ["the good one"]
    assert api.delete(f"{url}/{body['id']}").status_code == 404
    actions = list(AuditLog.objects.filter(action__startswith="branch.label").values_list("action", flat=True))
    assert sorted(actions) == ["branch.label", "branch.label", "branch.label_delete", "branch.label_rename"]


def test_labels_are_404_for_another_users_session_run_and_label(api, user, tree):
    theirs = SessionFactory(owner=UserFactory())
    their_run = RunFactory(session=theirs)
    their_label = branch_tools.label_create(session=theirs, run=their_run, name="secret")
    mine = tree["session"]
    assert api.get(f"/api/sessions/{theirs.pk}/labels").status_code == 404
    assert post_json(api, f"/api/sessions/{theirs.pk}/labels", {"run_id": str(their_run.pk), "name": "x"}
                     ).status_code == 404
    # my session, their run: 404, nothing written
    assert post_json(api, f"/api/sessions/{mine.pk}/labels", {"run_id": str(their_run.pk), "name": "x"}
                     ).status_code == 404
    for session_id in (theirs.pk, mine.pk):
        url = f"/api/sessions/{session_id}/labels/{their_label.pk}"
        assert post_json(api, url, {"name": "hijacked"}, method="patch").status_code == 404
        assert api.delete(url).status_code == 404
    their_label.refresh_from_db()
    assert their_label.name == "secret" and BranchLabel.objects.filter(session=mine).count() == 0
    # pages too
    assert api.post(f"/s/{theirs.pk}/runs/{their_run.pk}/label", {"name": "x"}).status_code == 404
    assert api.post(f"/s/{mine.pk}/runs/{their_run.pk}/label", {"name": "x"}).status_code == 404
    assert api.post(f"/s/{theirs.pk}/labels/{their_label.pk}/delete").status_code == 404
    assert BranchLabel.objects.filter(pk=their_label.pk).exists()


def test_labels_show_on_the_session_page_and_the_sessions_list_and_open_their_branch(api, tree):
    session, side = tree["session"], tree["side"]
    response = api.post(f"/s/{session.pk}/runs/{side[1].pk}/label", {"name": "train plan"})
    assert response.status_code == 302
    label = BranchLabel.objects.get(session=session)
    assert label.run_id == side[1].pk
    chat = api.get(f"/s/{session.pk}/").content.decode()
    assert "train plan" in chat and f'/s/{session.pk}/runs/{side[1].pk}/open' in chat
    listing = api.get("/").content.decode()
    assert "train plan" in listing
    # opening the label shows its branch: the newest run below the labelled one becomes active
    assert api.post(f"/s/{session.pk}/runs/{side[1].pk}/open").status_code == 302
    session.refresh_from_db()
    assert session.active_run_id == side[2].pk
    assert "Book early." in api.get(f"/s/{session.pk}/").content.decode()


def test_sessions_list_reads_the_labels_of_a_page_in_one_query(api, user):
    for n in range(12):
        s = SessionFactory(owner=user, title=f"s{n}")
        run = RunFactory(session=s)
        branch_tools.label_create(session=s, run=run, name=f"label-{n}")
    with CaptureQueriesContext(connection) as queries:
        html = api.get("/").content.decode()
    assert all(f"label-{n}" in html for n in range(12))
    assert sum("branchlabel" in q["sql"] for q in queries) == 1


def test_a_fork_gets_the_labels_of_its_shared_turns_and_then_they_are_its_own(user, tree):
    session, main, side = tree["session"], tree["main"], tree["side"]
    on_shared = branch_tools.label_create(session=session, run=main[1], name="start")
    branch_tools.label_create(session=session, run=main[5], name="main end")  # below the fork point: not shared
    branch_tools.label_create(session=session, run=side[0], name="train")  # another branch: not shared
    fork = services.session_fork(run=main[3], owner=user)
    copied = list(branch_reads.labels_of(fork))
    assert [(x.name, x.run_id) for x in copied] == [("start", main[1].pk)]
    branch_tools.label_rename(label=copied[0], name="fork start")
    on_shared.refresh_from_db()
    assert on_shared.name == "start"  # the source's label is untouched
    branch_tools.label_create(session=fork, run=main[0], name="only in the fork")
    assert "only in the fork" not in [x.name for x in branch_reads.labels_of(session)]
    services.session_delete(session=session)  # the source goes: the fork's labels stay
    assert [x.name for x in branch_reads.labels_of(fork)] == ["fork start", "only in the fork"]


# --- the branch diff ------------------------------------------------------------------------------

@pytest.fixture
def two_versions(user):
    """Two branches from a shared 3-turn start: A (3 more turns) and B (an edited first turn, then
    one equal turn, one changed answer, and an extra turn)."""
    session = SessionFactory(owner=user, title="Diff me")
    start = build_chain(session, 3)
    a1 = RunFactory(session=session, parent_run=start[-1], turn=("Plan a trip to Lyon", "Take the train on Monday."),
                    prompt_tokens=100, completion_tokens=10)
    a2 = RunFactory(session=session, parent_run=a1, turn=("Where to stay?", "A hotel near the station."),
                    prompt_tokens=150, completion_tokens=12)
    b1 = RunFactory(session=session, parent_run=start[-1], turn=("Plan a trip to Nice", "Take the bus on Tuesday."),
                    prompt_tokens=101, completion_tokens=11)
    b2 = RunFactory(session=session, parent_run=b1, turn=("Where to stay?", "A hotel near the beach."),
                    prompt_tokens=160, completion_tokens=13)
    b3 = RunFactory(session=session, parent_run=b2, turn=("Anything else?", "Bring sunscreen."),
                    prompt_tokens=200, completion_tokens=5)
    return {"session": session, "start": start, "a": a2, "b": b3}


def test_diff_api_aligns_turns_from_the_common_ancestor_with_word_differences(api, two_versions, settings):
    settings.ARBOR_MODEL_PRICES = {"fake-model": {"prompt": 1.0, "completion": 2.0}}
    a, b = two_versions["a"], two_versions["b"]
    response = api.get(f"/api/runs/{a.pk}/diff/{b.pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["common_ancestor_run_id"] == str(two_versions["start"][-1].pk) and body["shared_turns"] == 3
    assert [r["kind"] for r in body["rows"]] == ["changed", "changed", "only_b"]
    first = body["rows"][0]
    assert [s["text"].strip() for s in first["a_input"] if s["op"] == "delete"] == ["Lyon"]
    assert [s["text"].strip() for s in first["b_input"] if s["op"] == "insert"] == ["Nice"]
    assert [s["text"].strip() for s in first["b_answer"] if s["op"] == "insert"] == ["bus", "Tuesday."]
    second = body["rows"][1]
    assert {s["op"] for s in second["a_input"]} == {"equal"}  # the same question, a different answer
    assert [s["text"].strip() for s in second["b_answer"] if s["op"] == "insert"] == ["beach."]
    assert body["rows"][2]["a"] is None and body["rows"][2]["b"]["input"] == "Anything else?"
    ta, tb = body["totals_a"], body["totals_b"]
    assert (ta["turns"], ta["prompt_tokens"], ta["completion_tokens"]) == (2, 250, 22)
    assert (tb["turns"], tb["prompt_tokens"], tb["completion_tokens"]) == (3, 461, 29)
    assert tb["cost_usd"] == pytest.approx((461 * 1.0 + 29 * 2.0) / 1_000_000) and tb["cost_complete"] is True


def test_diff_of_a_run_with_its_own_ancestor_and_across_roots(api, user, two_versions):
    start, a = two_versions["start"], two_versions["a"]
    body = api.get(f"/api/runs/{start[1].pk}/diff/{a.pk}").json()
    assert body["common_ancestor_run_id"] == str(start[1].pk) and body["totals_a"]["turns"] == 0
    assert [r["kind"] for r in body["rows"]] == ["only_b"] * 3
    other_root = RunFactory(session=two_versions["session"], turn=("a new root", "ok"))
    body = api.get(f"/api/runs/{other_root.pk}/diff/{a.pk}").json()
    assert body["common_ancestor_run_id"] is None and body["shared_turns"] == 0
    assert body["totals_b"]["turns"] == 5


def test_diff_is_404_for_another_users_runs(api, two_versions):
    theirs = RunFactory(session=SessionFactory(owner=UserFactory()))
    mine = two_versions["a"]
    assert api.get(f"/api/runs/{mine.pk}/diff/{theirs.pk}").status_code == 404
    assert api.get(f"/api/runs/{theirs.pk}/diff/{mine.pk}").status_code == 404
    assert api.get(f"/api/runs/{mine.pk}/diff/not-a-uuid").status_code == 404
    session = two_versions["session"]
    assert api.get(f"/s/{session.pk}/diff/?a={mine.pk}&b={theirs.pk}").status_code == 404
    assert api.get(f"/s/{theirs.session_id}/diff/?a={theirs.pk}&b={theirs.pk}").status_code == 404


def test_diff_page_shows_both_branches_side_by_side_with_marked_words(api, two_versions):
    session, a, b = two_versions["session"], two_versions["a"], two_versions["b"]
    html = api.get(f"/s/{session.pk}/diff/?a={a.pk}&b={b.pk}").content.decode()
    assert '<del class="diff-del">Lyon</del>' in html and '<ins class="diff-ins">Nice</ins>' in html
    assert "Both branches share 3 turns" in html and "only in B" in html
    assert html.count('<li class="diff-row ') == 3
    pickers = api.get(f"/s/{session.pk}/diff/").content.decode()
    assert "pick a branch" in pickers and '<li class="diff-row ' not in pickers


def test_sibling_navigator_links_to_the_diff_of_the_two_versions(api, two_versions):
    session, a, b = two_versions["session"], two_versions["a"], two_versions["b"]
    Session.objects.filter(pk=session.pk).update(active_run=b)
    html = api.get(f"/s/{session.pk}/").content.decode()
    link = re.search(r'href="(/s/[^"]+/versions-diff\?other=[0-9a-f-]+)"', html).group(1)
    response = api.get(link.replace("&amp;", "&"))
    assert response.status_code == 302
    target = response["Location"]
    assert f"a={b.pk}" in target and f"b={a.pk}" in target  # the branch shown, then the other version's newest leaf


def test_comparison_results_link_to_the_diff(api, user, two_versions):
    from comparisons.models import Variant, VariantRun

    session, start = two_versions["session"], two_versions["start"]
    comparison = ComparisonFactory(owner=user, session=session, branch_point=start[-1], prompts=["p"],
                                   column_order=[0, 1])
    first_runs = [two_versions["a"].parent_run, two_versions["b"].parent_run.parent_run]
    for i, run in enumerate(first_runs):
        variant = Variant.objects.create(comparison=comparison, position=i, label=f"v{i}", config={}, config_key="k")
        VariantRun.objects.create(variant=variant, turn=0, run=run)
    html = api.get(f"/compare/{comparison.pk}/").content.decode()
    assert f"/s/{session.pk}/diff/?a={first_runs[0].pk}&amp;b={first_runs[1].pk}" in html


# --- prune ----------------------------------------------------------------------------------------

def _search(client, query):
    return client.get("/", {"q": query}).content.decode()


def test_prune_hides_a_subtree_everywhere_and_undo_gives_it_back(api, user, tree):
    session, main, side = tree["session"], tree["main"], tree["side"]
    Session.objects.filter(pk=session.pk).update(active_run=side[2])
    label = branch_tools.label_create(session=session, run=side[1], name="train plan")
    response = api.post(f"/s/{session.pk}/runs/{side[0].pk}/prune")
    assert response.status_code == 302
    prune = Prune.objects.get(session=session)
    assert prune.run_count == 3 and set(Run.objects.filter(pruned_by=prune)) == set(side)
    session.refresh_from_db()
    assert session.active_run_id == main[-1].pk  # the newest branch left next to it
    # the tree (page and API), counts, sibling positions, search, exports, labels: gone
    tree_html = api.get(f"/s/{session.pk}/tree/").content.decode()
    assert "go by train" not in tree_html
    api_tree = api.get(f"/api/sessions/{session.pk}/tree").json()
    assert len(api_tree["runs"]) == 6
    row = pages.with_counts(Session.objects.filter(pk=session.pk)).get()
    assert (row.run_count, row.branch_count) == (6, 1)
    assert paths.sibling_positions(session, [main[3]])[main[3].pk][:2] == (1, 1)
    assert "Trip" not in _search(api, "coastal")
    runs, _ = exporters.tree(session)
    assert len(runs) == 6
    assert api.get(f"/api/sessions/{session.pk}/labels").json() == []
    assert api.get(f"/s/{session.pk}/runs/{side[1].pk}/").status_code == 404  # gone from the session's pages
    assert post_json(api, f"/api/sessions/{session.pk}/runs", {"input": "x", "parent_run_id": str(side[2].pk)}
                     ).status_code == 404
    chat = api.get(f"/s/{session.pk}/").content.decode()
    assert "Recently pruned" in chat and f"/prunes/{prune.pk}/undo" in chat
    # undo
    assert api.post(f"/s/{session.pk}/prunes/{prune.pk}/undo").status_code == 302
    assert not Run.objects.filter(pruned_by__isnull=False).exists()
    session.refresh_from_db()
    assert session.active_run_id == side[2].pk  # shown again, as before the prune
    assert len(api.get(f"/api/sessions/{session.pk}/tree").json()["runs"]) == 9
    assert "Trip" in _search(api, "coastal")
    assert [x["id"] for x in api.get(f"/api/sessions/{session.pk}/labels").json()] == [str(label.pk)]
    assert api.post(f"/s/{session.pk}/prunes/{prune.pk}/undo").status_code == 404  # once
    assert list(AuditLog.objects.filter(action__startswith="branch.prune").order_by("id")
                .values_list("action", "details__runs")) == [("branch.prune", 3), ("branch.prune_undo", 3)]


def test_undo_is_refused_after_the_undo_time(api, tree, settings):
    session, side = tree["session"], tree["side"]
    prune = branch_tools.prune_subtree(session=session, run=side[0])
    Prune.objects.filter(pk=prune.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.ARBOR_UNDO_DELETE_SECONDS + 1))
    assert api.post(f"/s/{session.pk}/prunes/{prune.pk}/undo").status_code == 404
    assert Run.objects.filter(pruned_by=prune).count() == 3  # stays hidden
    assert "Recently pruned" not in api.get(f"/s/{session.pk}/").content.decode()


def test_a_fork_sharing_pruned_runs_keeps_working(api, user, tree, django_capture_on_commit_callbacks):
    session, side = tree["session"], tree["side"]
    fork = services.session_fork(run=side[1], owner=user)
    own = services.run_start(session=fork, input="continue in the fork")
    branch_tools.prune_subtree(session=session, run=side[0])
    pruned = Run.objects.get(pk=side[1].pk)
    assert pruned.pruned_by_id is not None
    assert not session.can_branch_from(pruned) and fork.can_branch_from(pruned)
    fork_tree = api.get(f"/api/sessions/{fork.pk}/tree").json()["runs"]
    assert {r["run_id"] for r in fork_tree} >= {str(side[0].pk), str(side[1].pk), str(own.pk)}
    assert Run.objects.get(pk=own.pk).pruned_by_id is None  # the fork's own runs are untouched
    chat = api.get(f"/s/{fork.pk}/").content.decode()
    assert "which line?" in chat and "continue in the fork" in chat
    with django_capture_on_commit_callbacks(execute=False):
        response = post_json(api, f"/api/sessions/{fork.pk}/runs", {"input": "more", "parent_run_id": str(side[1].pk)})
    assert response.status_code == 202
    runs, _ = exporters.tree(fork)
    assert side[1].pk in {r.pk for r in runs}


def test_prune_refuses_running_runs_and_a_forks_shared_turns(user, tree):
    session, main = tree["session"], tree["main"]
    RunFactory(session=session, parent_run=main[-1], status=RunStatus.RUNNING)
    with pytest.raises(Conflict):
        branch_tools.prune_subtree(session=session, run=main[4])
    fork = services.session_fork(run=main[2], owner=user)
    with pytest.raises(Conflict):
        branch_tools.prune_subtree(session=fork, run=main[1])
    assert not Run.objects.filter(pruned_by__isnull=False).exists() and not Prune.objects.exists()


def test_nested_prunes_undo_in_order(user, tree):
    session, side = tree["session"], tree["side"]
    inner = branch_tools.prune_subtree(session=session, run=side[2])
    outer = branch_tools.prune_subtree(session=session, run=side[0])
    assert (inner.run_count, outer.run_count) == (1, 2)
    with pytest.raises(Conflict):
        branch_tools.prune_undo(prune=inner)  # its parent is still pruned: no orphan in the tree
    branch_tools.prune_undo(prune=outer)
    assert Run.objects.filter(pruned_by__isnull=False).count() == 1
    branch_tools.prune_undo(prune=Prune.objects.get(pk=inner.pk))
    assert not Run.objects.filter(pruned_by__isnull=False).exists()


def test_prune_is_404_for_another_users_run(api, tree):
    theirs = SessionFactory(owner=UserFactory())
    their_run = RunFactory(session=theirs)
    their_prune = branch_tools.prune_subtree(session=theirs, run=RunFactory(session=theirs, parent_run=their_run))
    assert api.post(f"/s/{theirs.pk}/runs/{their_run.pk}/prune").status_code == 404
    assert api.post(f"/s/{tree['session'].pk}/runs/{their_run.pk}/prune").status_code == 404
    assert api.post(f"/s/{theirs.pk}/prunes/{their_prune.pk}/undo").status_code == 404
    assert api.post(f"/s/{tree['session'].pk}/prunes/{their_prune.pk}/undo").status_code == 404
    assert Run.objects.filter(pruned_by=their_prune).count() == 1 and their_run.pruned_by_id is None


# --- shares ---------------------------------------------------------------------------------------

def _share_url(share) -> str:
    return f"/shared/{branch_reads.share_token(share)}/"


def test_a_share_link_shows_exactly_one_branch_to_anyone(api, tree):
    session, main, side = tree["session"], tree["main"], tree["side"]
    response = api.post(f"/s/{session.pk}/runs/{side[2].pk}/share", {"expires_in_days": "7"})
    assert response.status_code == 302
    share = BranchShare.objects.get(session=session)
    assert share.run_id == side[2].pk and share.expires_at > timezone.now() + timedelta(days=6)
    page = api.get(f"/s/{session.pk}/branches/").content.decode()
    assert _share_url(share) in page and "Revoke" in page
    anonymous = Client()
    shown = anonymous.get(_share_url(share))
    assert shown.status_code == 200
    html = shown.content.decode()
    for text in ("question 0", "answer 2", "go by train?", "The coastal line.", "Book early."):
        assert text in html
    assert "question 3" not in html and "answer 5" not in html  # the main line below the branch point
    assert "<textarea" not in html and "<form" not in html.split("<main")[1]  # no composer, no actions
    assert "/tree/" not in html and "/s/" not in html and "memory" not in html.lower().split("<main")[1]
    assert str(main[0].pk) not in html  # no run ids either
    assert shown["Referrer-Policy"] == "no-referrer" and "no-store" in shown["Cache-Control"]
    assert AuditLog.objects.filter(action="branch.share", target_id=str(share.pk)).exists()


def test_share_links_404_when_wrong_tampered_revoked_expired_pruned_or_deleted(api, user, tree):
    session, main, side = tree["session"], tree["main"], tree["side"]
    anonymous = Client()
    share = branch_tools.share_create(session=session, run=main[-1])
    url = _share_url(share)
    assert anonymous.get(url).status_code == 200
    token = branch_reads.share_token(share)
    assert anonymous.get(f"/shared/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}/").status_code == 404
    assert anonymous.get(f"/shared/{signing.dumps(share.pk.hex, salt='other')}/").status_code == 404
    assert anonymous.get(f"/shared/{share.pk}/").status_code == 404  # an id is not a token
    assert anonymous.get("/shared/x/").status_code == 404
    # revoked: the owner revokes on the branches page
    assert api.post(f"/s/{session.pk}/shares/{share.pk}/revoke").status_code == 302
    assert anonymous.get(url).status_code == 404
    assert AuditLog.objects.filter(action="branch.share_revoke", target_id=str(share.pk)).exists()
    # expired
    expiring = branch_tools.share_create(session=session, run=main[-1], expires_in_days=1)
    assert anonymous.get(_share_url(expiring)).status_code == 200
    BranchShare.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert anonymous.get(_share_url(expiring)).status_code == 404
    # pruned, then given back
    pruned = branch_tools.share_create(session=session, run=side[1])
    prune = branch_tools.prune_subtree(session=session, run=side[0])
    assert anonymous.get(_share_url(pruned)).status_code == 404
    branch_tools.prune_undo(prune=prune)
    assert anonymous.get(_share_url(pruned)).status_code == 200
    # the session deleted
    services.session_delete(session=session)
    assert anonymous.get(_share_url(pruned)).status_code == 404


def test_shares_are_404_for_another_user(api, tree):
    theirs = SessionFactory(owner=UserFactory())
    their_run = RunFactory(session=theirs)
    share = branch_tools.share_create(session=theirs, run=their_run)
    assert api.post(f"/s/{theirs.pk}/runs/{their_run.pk}/share").status_code == 404
    assert api.post(f"/s/{tree['session'].pk}/runs/{their_run.pk}/share").status_code == 404
    assert api.post(f"/s/{tree['session'].pk}/shares/{share.pk}/revoke").status_code == 404
    assert api.get(f"/s/{theirs.pk}/branches/").status_code == 404
    share.refresh_from_db()
    assert share.revoked_at is None


def test_share_create_checks_its_input(tree):
    session, main = tree["session"], tree["main"]
    for bad in (0, 366, "7", True, 1.5):
        with pytest.raises(Exception) as caught:
            branch_tools.share_create(session=session, run=main[-1], expires_in_days=bad)
        assert getattr(caught.value, "status", None) == 400
    running = RunFactory(session=session, parent_run=main[-1], status=RunStatus.RUNNING)
    with pytest.raises(Conflict):
        branch_tools.share_create(session=session, run=running)
    with pytest.raises(NotFound):
        branch_tools.share_create(session=session, run=RunFactory())
    assert not BranchShare.objects.exists()
