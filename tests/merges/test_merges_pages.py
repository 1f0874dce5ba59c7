"""Fan-out, fuse and merge through the pages (Django's test client): the composer's "Ask all", the
side-by-side columns and "Continue with this one", the fuse form, the merge dialog (preview,
confirm, undo), provenance notes on the turn, and the chat page's query count with merges present."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from branches import services as branch_tools
from branches.selectors import share_token
from comparisons.models import Comparison, VariantRun
from conversations.models import BranchLabel, Message, Run, RunStatus, Session
from merges import services
from merges.models import DigestDraft, FanOut, Provenance
from tests.support.factories import AgentFactory, RunFactory, SessionFactory, build_chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def me(client, user):
    client.force_login(user)
    return user


def _finish(run, answer):
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, started_at=now, first_token_at=now,
                                         finished_at=now, prompt_tokens=10, completion_tokens=3)
    Message.objects.create(run=run, position=1, role="assistant", content=answer)


def _one_turn_merged(owner, label: str | None = None):
    """A session with a main chain of 3 turns and a side branch of 4 from its first turn (named
    ``label`` if given); the side's turn 2 merged onto the main's tip. ``(session, main, side, merge)``."""
    session = SessionFactory(owner=owner)
    main = build_chain(session, 3)
    side = build_chain(session, 4, parent=main[0])
    if label:
        BranchLabel.objects.create(session=session, run=side[-1], name=label)
    plan = services.merge_plan(session=session, target=main[-1], source=side[-1], mode="turns", run_ids=[side[1].pk])
    return session, main, side, services.merge_create(session=session, plan=plan)


def test_ask_all_starts_a_fan_out_and_the_chat_shows_it_side_by_side(client, me):
    session = SessionFactory(owner=me)
    build_chain(session, 2)
    agents = [AgentFactory(owner=me, model=f"m{i}") for i in range(3)]
    before = Run.objects.count()
    refused = client.post(f"/s/{session.pk}/fan-out", {"input": "hi", "variant": [str(agents[0].pk)]})
    assert refused.status_code == 302 and Run.objects.count() == before
    answer = client.post(f"/s/{session.pk}/fan-out", {"input": "Which?", "variant": [str(a.pk) for a in agents]},
                         headers={"HX-Request": "true"})
    assert answer.status_code == 204 and answer["HX-Redirect"].startswith(f"/s/{session.pk}/")
    group = FanOut.objects.get(session=session)
    runs = list(group.runs.order_by("created_at"))
    for run in runs:
        _finish(run, f"answer from {run.model}")
    page = client.get(f"/s/{session.pk}/").content.decode()
    assert len(re.findall(r'class="fan-col[ "]', page)) == 3 and page.count(">Continue with this one</button>") == 2
    assert all(f"answer from m{i}" in page for i in range(3))
    assert "Fuse answers" in page
    second = runs[1]
    opened = client.post(f"/s/{session.pk}/runs/{second.pk}/open")
    assert opened.status_code == 302
    session.refresh_from_db()
    assert session.active_run_id == second.pk
    page = client.get(f"/s/{session.pk}/").content.decode()
    shown = re.search(r'<article class="fan-col shown"[^>]*id="fan-([0-9a-f-]+)"', page)
    assert shown and shown.group(1) == str(second.pk)


def test_fuse_form_starts_a_fused_sibling_listed_with_its_sources(client, me):
    session = SessionFactory(owner=me)
    parent = build_chain(session, 1)[0]
    a, b = (RunFactory(session=session, parent_run=parent, turn=("q", f"ans {i}")) for i in range(2))
    answer = client.post(f"/s/{session.pk}/runs/{a.pk}/fuse", {"source": [str(a.pk), str(b.pk)],
                                                                "instruction": "Merge these.", "agent_id": ""})
    assert answer.status_code == 302
    fused = Provenance.objects.get(kind="fuse").run
    assert fused.parent_run_id == parent.pk
    page = client.get(f"/s/{session.pk}/").content.decode()
    assert "fused from" in page and page.count(">answer 1<") + page.count(">answer 2<") == 2


def test_merge_dialog_previews_confirms_and_undoes(client, me):
    session = SessionFactory(owner=me)
    main = build_chain(session, 3)
    side = build_chain(session, 20, parent=main[0])
    BranchLabel.objects.create(session=session, run=side[-1], name="draft B")
    Session.objects.filter(pk=session.pk).update(active_run=main[-1])
    url = f"/s/{session.pk}/runs/{main[-1].pk}/merge"
    dialog = client.get(url).content.decode()
    assert "draft B — turn 21" in dialog
    chosen = [side[2], side[8], side[13]]
    preview = client.get(url, {"source": side[-1].pk, "mode": "turns", "turn": [r.pk for r in chosen],
                               "preview": "1"}).content.decode()
    tokens = int(re.search(r'<span class="preview-tokens">(\d+)</span>', preview).group(1))
    shown = preview.split('class="merge-preview"')[1]
    assert tokens > 0 and "question 9" in shown and "question 10" not in shown and shown.count("<li") == 6
    assert Provenance.objects.count() == 0
    done = client.post(url, {"source": side[-1].pk, "mode": "turns", "turn": [r.pk for r in chosen]})
    assert done.status_code == 302
    merge = Provenance.objects.get(kind="merge").run
    page = client.get(f"/s/{session.pk}/").content.decode()
    assert "merged from <em>draft B</em>, turns 4, 10, 15" in page and "Undo merge" in page
    assert client.post(f"/s/{session.pk}/runs/{merge.pk}/merge/undo").status_code == 302
    session.refresh_from_db()
    assert session.active_run_id == main[-1].pk
    assert "merged from" not in client.get(f"/s/{session.pk}/").content.decode()


def test_merge_dialog_refuses_bad_input_without_writing(client, me, other_user):
    session = SessionFactory(owner=me)
    main = build_chain(session, 3)
    side = build_chain(session, 2, parent=main[0])
    url = f"/s/{session.pk}/runs/{main[-1].pk}/merge"
    bad = client.post(url, {"source": side[-1].pk, "mode": "turns", "turn": [main[1].pk]})
    assert bad.status_code == 400 and "Not a finished turn" in bad.content.decode()
    theirs = SessionFactory(owner=other_user)
    their_run = build_chain(theirs, 1)[0]
    assert client.get(f"/s/{theirs.pk}/runs/{their_run.pk}/merge").status_code == 404
    assert client.post(url, {"source": their_run.pk, "mode": "turns"}).status_code in (400, 404)
    assert Provenance.objects.count() == 0


def test_chat_page_query_count_stays_with_merges_present(client, me):
    counts = []
    for depth in (12, 300):
        session = SessionFactory(owner=me)
        main = build_chain(session, depth)
        side = build_chain(session, 5, parent=main[depth // 2])
        for target in (main[-3], main[-2]):
            plan = services.merge_plan(session=session, target=target, source=side[-1], mode="turns",
                                       run_ids=[side[1].pk])
            services.merge_create(session=session, plan=plan)
        leaf = build_chain(session, 2, parent=Run.objects.filter(parent_run=main[-2], finish_reason="merge").get())
        Session.objects.filter(pk=session.pk).update(active_run=leaf[-1])
        with CaptureQueriesContext(connection) as queries:
            page = client.get(f"/s/{session.pk}/").content.decode()
        counts.append(len(queries))
        assert page.count("merged from another branch") >= 1
    assert counts[0] == counts[1]


def test_tree_map_draws_provenance_edges_dashed_until_undone(client, me):
    session, main, side, merge = _one_turn_merged(me)
    svg = client.get(f"/s/{session.pk}/tree/map").content.decode()
    drawn = re.search(r'<path class="prov" d="M(\d+) (\d+)L(\d+) (\d+)"/>', svg)
    assert drawn, svg[:500]
    circles = {rid: (cx, cy) for cx, cy, rid in re.findall(
        r'<circle class="n[^"]*" cx="(\d+)" cy="(\d+)" r="\d+" data-run-id="([^"]+)"', svg)}
    assert circles[str(side[-1].pk)] == drawn.group(1, 2)
    assert circles[str(merge.pk)] == drawn.group(3, 4)
    assert 'class="prov"' in client.get(f"/s/{session.pk}/tree/").content.decode()
    services.merge_undo(session=session, run=merge)
    assert "prov" not in client.get(f"/s/{session.pk}/tree/map").content.decode()


def test_share_link_shows_the_carried_content_not_the_other_branch(client, me):
    session = SessionFactory(owner=me)
    main = build_chain(session, 3)
    side = build_chain(session, 6, parent=main[0])
    plan = services.merge_plan(session=session, target=main[-1], source=side[-1], mode="turns", run_ids=[side[2].pk])
    merge = services.merge_create(session=session, plan=plan)
    share = branch_tools.share_create(session=session, run=merge)
    client.logout()
    page = client.get(f"/shared/{share_token(share)}/").content.decode()
    assert "merged from another branch" in page
    assert "question 3" in page and "answer 3" in page  # the carried turn
    assert "question 4" not in page and "question 6" not in page  # the rest of the other branch is not shared


def test_compare_blind_turns_a_fan_out_into_a_blind_comparison(client, me):
    session = SessionFactory(owner=me)
    build_chain(session, 2)
    group = services.fan_out(session=session, input="Which?", variants=[
        services.Variant(model="model-a"), services.Variant(model="model-b"), services.Variant(model="model-c")])
    for run in group.started:
        _finish(run, f"answer from {run.model}")
    page = client.get(f"/s/{session.pk}/").content.decode()
    assert "Compare blind" in page
    runs_before = Run.objects.count()
    answer = client.post(f"/compare/from-runs/{session.pk}/", {"run": [r.pk for r in group.started]})
    assert answer.status_code == 302, answer.content.decode()[:3000]
    comparison = Comparison.objects.get(session=session)
    assert answer.status_code == 302 and answer["Location"].endswith(f"/compare/{comparison.pk}/")
    assert comparison.blind and comparison.prompts == ["Which?"] and Run.objects.count() == runs_before
    assert set(VariantRun.objects.filter(variant__comparison=comparison).values_list("run_id", flat=True)) == \
        {r.pk for r in group.started}
    detail = client.get(f"/compare/{comparison.pk}/").content.decode()
    assert "answer from model-a" in detail and "model-a" not in detail.split("answer from model-a")[0][-300:]
    again = client.post(f"/compare/from-runs/{session.pk}/", {"run": [r.pk for r in group.started]})
    assert again.status_code == 302 and Comparison.objects.filter(session=session).count() == 1


def test_branch_diff_compares_a_merge_turn_by_what_it_carried(client, me):
    session, main, side, merge = _one_turn_merged(me)
    other = build_chain(session, 1, parent=main[-1])
    page = client.get(f"/s/{session.pk}/diff/", {"a": merge.pk, "b": other[-1].pk}).content.decode()
    assert "Merged:" in page and "question 2" in page and "answer 2" in page


def test_the_turn_head_marks_a_pruned_merge_source(client, me):
    session, main, side, merge = _one_turn_merged(me, label="draft B")
    assert "(pruned)" not in client.get(f"/s/{session.pk}/").content.decode()
    branch_tools.prune_subtree(session=session, run=side[0])
    page = client.get(f"/s/{session.pk}/?at={merge.pk}").content.decode()
    head = page.split(f'id="turn-{merge.pk}"')[1].split('class="msg merged"')[0]
    assert re.search(r"merged from <em>draft B</em> <span class=\"pruned-mark\"[^>]*>\(pruned\)</span>, turn 3", head)


def test_merge_undo_is_refused_once_a_turn_hangs_below_the_merge_turn(client, me):
    session, main, side, merge = _one_turn_merged(me)
    below = build_chain(session, 2, parent=merge)
    url = f"/s/{session.pk}/runs/{merge.pk}/merge/undo"
    refused = client.post(url, follow=True)
    assert "The merge can no longer be undone: 1 turn was added below it." in refused.content.decode()
    assert not Run.objects.filter(pruned_by__isnull=False).exists()
    api = client.post(f"/api/runs/{merge.pk}/merge/undo")
    assert api.status_code == 409 and "1 turn was added below it" in api.json()["detail"]
    branch_tools.prune_subtree(session=session, run=below[0])  # the turns below go: undo is allowed again
    assert client.post(url).status_code == 302
    assert Run.objects.get(pk=merge.pk).pruned_by_id is not None


def test_fuse_dialog_offers_the_versions_of_any_turn(client, me):
    session = SessionFactory(owner=me)
    main = build_chain(session, 2)
    other = build_chain(session, 1, parent=main[0])[0]
    Session.objects.filter(pk=session.pk).update(active_run=main[1])
    chat = client.get(f"/s/{session.pk}/").content.decode()
    assert chat.count("Fuse answers…") == 1 and f"/runs/{main[1].pk}/fuse/dialog" in chat
    dialog = client.get(f"/s/{session.pk}/runs/{main[1].pk}/fuse/dialog").content.decode()
    assert dialog.count('name="source"') == 2 and "Version 2" in dialog
    answer = client.post(f"/s/{session.pk}/runs/{main[1].pk}/fuse", {"source": [main[1].pk, other.pk],
                                                                       "instruction": "Merge both."})
    assert answer.status_code == 302
    fused = Provenance.objects.get(kind="fuse").run
    assert fused.parent_run_id == main[0].pk and fused.status == RunStatus.QUEUED
    assert Message.objects.get(run=fused, position=0).content.startswith("Merge both.")


def test_merge_dialog_drafts_a_digest_in_a_run_and_shows_it_editable(client, me):
    session = SessionFactory(owner=me, title="Plan")
    main = build_chain(session, 3)
    side = build_chain(session, 4, parent=main[0])
    url = f"/s/{session.pk}/runs/{main[-1].pk}/merge"
    started = client.post(f"{url}/digest", {"source": side[-1].pk, "agent_id": ""}, HTTP_HX_REQUEST="true")
    assert started.status_code == 204
    draft = DigestDraft.objects.get(session=session)
    assert started["HX-Redirect"].endswith(f"draft_run={draft.run_id}")
    waiting = client.get(started["HX-Redirect"]).content.decode()
    assert "drafting…" in waiting and f"/runs/{draft.run_id}/stream" in waiting
    assert 'id="merge-digest" rows="6"></textarea>' in waiting
    _finish(draft.run, "The side branch chose the coast.")
    done = client.get(started["HX-Redirect"]).content.decode()
    assert "drafting…" not in done and ">The side branch chose the coast.</textarea>" in done
    assert f"/runs/{draft.run_id}/context" in done  # the draft's own audit page
    assert Provenance.objects.count() == 0
