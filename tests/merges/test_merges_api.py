"""Fan-out, fuse and merge through the services and the JSON API (Django's test client): what each
writes, the provenance reads, the merge preview's exact messages and tokens, undo, ownership (404)
and bad input (a JSON 400 that writes nothing)."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditLog
from branches import services as branch_tools
from conversations.models import BranchLabel, Message, Prune, Run, RunStatus, Session
from conversations.selectors import paths
from merges import services
from merges.models import FanOut, Provenance, ProvenanceSource
from search.selectors import keyword_search
from tests.support.factories import AgentFactory, ConnectionFactory, RunFactory, SessionFactory, build_chain

pytestmark = pytest.mark.django_db


def post_json(client, url, data):
    return client.post(url, data=json.dumps(data), content_type="application/json")


def counts() -> tuple:
    return (Run.objects.count(), Message.objects.count(), Provenance.objects.count(),
            ProvenanceSource.objects.count(), FanOut.objects.count(), Prune.objects.count())


@pytest.fixture
def tree(user):
    """Main line of 4 turns; branch "draft B" of 20 turns below turn 2 (index 1)."""
    session = SessionFactory(owner=user, title="Plan")
    main = build_chain(session, 4)
    side = build_chain(session, 20, parent=main[1])
    BranchLabel.objects.create(session=session, run=side[-1], name="draft B")
    Session.objects.filter(pk=session.pk).update(active_run=main[-1])
    session.refresh_from_db()
    return {"session": session, "main": main, "side": side}


# --- fan-out -------------------------------------------------------------------------------------

def test_fan_out_starts_sibling_runs_with_each_variant(api, user, tree):
    session, main = tree["session"], tree["main"]
    agent = AgentFactory(owner=user, model="agent-model")
    conn = ConnectionFactory(owner=user, name="Other")
    body = post_json(api, f"/api/sessions/{session.pk}/fan-out", {"input": "Which is best?", "variants": [
        {"model": "model-a"}, {"agent_id": agent.pk}, {"connection_id": conn.pk, "model": "model-c"}]})
    assert body.status_code == 202, body.content
    data = body.json()
    runs = [Run.objects.get(pk=r["run_id"]) for r in data["runs"]]
    assert [r.model for r in runs] == ["model-a", "agent-model", "model-c"]
    assert [r.parent_run_id for r in runs] == [main[-1].pk] * 3
    assert runs[1].agent_id == agent.pk and runs[2].connection_id == conn.pk
    assert all(r.status == RunStatus.QUEUED for r in runs)
    assert [m for m in Message.objects.filter(run__in=runs).values_list("content", flat=True)] == ["Which is best?"] * 3
    session.refresh_from_db()
    assert session.active_run_id == runs[0].pk  # the first is shown, the others are its siblings
    group = FanOut.objects.get(pk=data["fan_out_id"])
    assert set(group.runs.values_list("pk", flat=True)) == {r.pk for r in runs}
    assert AuditLog.objects.filter(action="merge.fan_out").count() == 1


@pytest.mark.parametrize("variants", [[{"model": "a"}], [{"model": str(i)} for i in range(5)], []])
def test_fan_out_needs_two_to_four_variants_and_writes_nothing(api, tree, variants):
    before = counts()
    answer = post_json(api, f"/api/sessions/{tree['session'].pk}/fan-out", {"input": "x", "variants": variants})
    assert answer.status_code == 400 and "variants" in answer.json()["detail"]
    assert counts() == before


def test_fan_out_bad_input_and_other_users_objects(api, other_user, tree):
    session = tree["session"]
    url = f"/api/sessions/{session.pk}/fan-out"
    before = counts()
    empty = post_json(api, url, {"input": "", "variants": [{"model": "a"}, {"model": "b"}]})
    assert empty.status_code == 400 and empty.json()["detail"]
    theirs = AgentFactory(owner=other_user)
    assert post_json(api, url, {"input": "x", "variants": [{"model": "a"}, {"agent_id": theirs.pk}]}).status_code == 404
    their_session = SessionFactory(owner=other_user)
    assert post_json(api, f"/api/sessions/{their_session.pk}/fan-out",
                     {"input": "x", "variants": [{"model": "a"}, {"model": "b"}]}).status_code == 404
    assert counts() == before


# --- fuse ----------------------------------------------------------------------------------------

def _siblings(session, parent, n=3):
    return [RunFactory(session=session, parent_run=parent, model=f"model-{i}",
                       turn=("Name a colour", f"colour {i}")) for i in range(n)]


def test_fuse_starts_a_sibling_whose_input_carries_the_sources(api, user, tree):
    session, main = tree["session"], tree["main"]
    a, b, c = _siblings(session, main[-1])
    answer = post_json(api, f"/api/runs/{a.pk}/fuse",
                       {"source_run_ids": [str(c.pk), str(a.pk)], "instruction": "Pick one colour."})
    assert answer.status_code == 202, answer.content
    fused = Run.objects.get(pk=answer.json()["run_id"])
    assert fused.parent_run_id == main[-1].pk and fused.status == RunStatus.QUEUED
    prompt = Message.objects.get(run=fused, position=0).content
    assert prompt.startswith("Pick one colour.\n\nQuestion:\nName a colour\n\n")
    assert "Answer 1 (Default · model-2):\ncolour 2" in prompt and "Answer 2 (Default · model-0):\ncolour 0" in prompt
    assert "colour 1" not in prompt
    got = api.get(f"/api/runs/{fused.pk}").json()["provenance"]
    assert got["kind"] == "fuse" and [s["run_id"] for s in got["sources"]] == [str(c.pk), str(a.pk)]
    assert not any(s["pruned"] for s in got["sources"])
    tree_nodes = {n["run_id"]: n for n in api.get(f"/api/sessions/{session.pk}/tree").json()["runs"]}
    assert tree_nodes[str(fused.pk)]["provenance"]["kind"] == "fuse"
    assert tree_nodes[str(a.pk)]["provenance"] is None


def test_fuse_refuses_bad_sources_and_writes_nothing(api, other_user, tree):
    session, main = tree["session"], tree["main"]
    a, b, _ = _siblings(session, main[-1])
    cousin = RunFactory(session=session, parent_run=main[0])
    running = RunFactory(session=session, parent_run=main[-1], status=RunStatus.RUNNING)
    theirs = RunFactory(session=SessionFactory(owner=other_user))
    url = f"/api/runs/{a.pk}/fuse"
    before = counts()
    assert post_json(api, url, {"source_run_ids": [str(a.pk)]}).status_code == 400
    assert post_json(api, url, {"source_run_ids": [str(a.pk), str(a.pk)]}).status_code == 400
    assert post_json(api, url, {"source_run_ids": [str(a.pk), str(cousin.pk)]}).status_code == 404
    assert post_json(api, url, {"source_run_ids": [str(a.pk), str(running.pk)]}).status_code == 409
    assert post_json(api, url, {"source_run_ids": "nope"}).status_code == 400
    assert post_json(api, f"/api/runs/{theirs.pk}/fuse",
                     {"source_run_ids": [str(theirs.pk), str(theirs.pk)]}).status_code == 404
    assert counts() == before


# --- merge ---------------------------------------------------------------------------------------

def test_merge_dry_run_previews_exact_messages_and_writes_nothing(api, tree):
    main, side = tree["main"], tree["side"]
    before = counts()
    chosen = [side[2], side[7], side[15]]
    answer = post_json(api, f"/api/runs/{main[-1].pk}/merge", {
        "source_run_id": str(side[-1].pk), "mode": "turns", "run_ids": [str(r.pk) for r in reversed(chosen)],
        "dry_run": True})
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert counts() == before
    assert data["dry_run"] and data["run_id"] is None and data["branch_name"] == "draft B"
    assert data["common_ancestor_run_id"] == str(main[1].pk)
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        (role, f"{word} {r.depth}") for r in chosen for role, word in (("user", "question"), ("assistant", "answer"))]
    assert data["tokens"] == sum(m["tokens"] for m in data["messages"]) and data["tokens"] > 0
    assert [t["turn"] for t in data["turns"]] == list(range(3, 23))
    assert [t["carried"] for t in data["turns"]].count(True) == 3


def test_merge_turns_writes_a_merge_turn_and_the_next_context_builds_from_it(api, tree):
    session, main, side = tree["session"], tree["main"], tree["side"]
    chosen = [side[0], side[9], side[19]]
    answer = post_json(api, f"/api/runs/{main[-1].pk}/merge", {
        "source_run_id": str(side[-1].pk), "mode": "turns", "run_ids": [str(r.pk) for r in chosen]})
    assert answer.status_code == 200 and answer.json()["run_id"], answer.content
    merge = Run.objects.get(pk=answer.json()["run_id"])
    assert merge.parent_run_id == main[-1].pk and merge.status == RunStatus.SUCCEEDED
    assert merge.memory_id == main[-1].memory_id
    session.refresh_from_db()
    assert session.active_run_id == merge.pk
    path = [m.content for m in Message.objects.path(merge)]
    assert path[-6:] == ["question 2", "answer 2", "question 11", "answer 11", "question 21", "answer 21"]
    got = api.get(f"/api/runs/{merge.pk}").json()["provenance"]
    assert got["kind"] == "merge" and got["mode"] == "turns" and got["branch_name"] == "draft B"
    assert got["source_run_id"] == str(side[-1].pk) and got["source_turn"] == 22
    assert [s["turn"] for s in got["sources"]] == [3, 12, 22]
    assert AuditLog.objects.filter(action="merge.create").count() == 1


def test_merge_digest_draft_is_a_queued_run_not_a_call_in_the_request(api, llm_server, tree):
    session, main, side = tree["session"], tree["main"], tree["side"]
    url = f"/api/runs/{main[-1].pk}/merge"
    before = Run.objects.filter(session=session).count()
    drafted = post_json(api, f"{url}/digest-draft", {"source_run_id": str(side[-1].pk)})
    assert drafted.status_code == 202, drafted.content
    assert llm_server.requests == []  # no model call inside the request: a worker executes the draft
    data = drafted.json()
    draft = Run.objects.get(pk=data["draft_run_id"])
    assert data["status"] == "queued" and draft.status == RunStatus.QUEUED and draft.parent_run_id is None
    assert str(draft.session_id) == data["session_id"] != str(session.pk)  # the drafts session, not the chat's
    assert draft.session.title == "Merge digests · Plan" and draft.params["max_tokens"] == services.DIGEST_MAX_TOKENS
    prompt = Message.objects.get(run=draft, position=0).content
    assert prompt.startswith(services.DIGEST_INSTRUCTION) and "User: question 2" in prompt and "question 21" in prompt
    assert Run.objects.filter(session=session).count() == before  # the chat's tree is unchanged
    session.refresh_from_db()
    assert session.active_run_id == main[-1].pk
    pending = post_json(api, url, {"source_run_id": str(side[-1].pk), "mode": "digest",
                                   "draft_run_id": str(draft.pk)})
    assert pending.status_code == 409 and "still being drafted" in pending.json()["detail"]
    again = post_json(api, f"{url}/digest-draft", {"source_run_id": str(side[-1].pk)}).json()
    assert Run.objects.get(pk=again["draft_run_id"]).session_id == draft.session_id  # one drafts session
    assert AuditLog.objects.filter(action="merge.digest_draft").count() == 2


def test_merge_digest_given(api, tree):
    main, side = tree["main"], tree["side"]
    url = f"/api/runs/{main[-1].pk}/merge"
    answer = post_json(api, url, {"source_run_id": str(side[-1].pk), "mode": "digest",
                                  "digest": "Trains win; book early."})
    assert answer.status_code == 200 and answer.json()["run_id"], answer.content
    data = answer.json()
    assert [m["content"] for m in data["messages"]] == [
        "Digest of the branch “draft B” (turns 3–22), merged into this conversation:\n\nTrains win; book early."]
    merge = Run.objects.get(pk=data["run_id"])
    assert list(Message.objects.filter(run=merge).values_list("role", "content")) == [
        ("user", data["messages"][0]["content"])]
    assert Provenance.objects.get(run=merge).digest == "Trains win; book early."


def test_merge_bad_input_writes_nothing(api, other_user, tree):
    main, side = tree["main"], tree["side"]
    url = f"/api/runs/{main[-1].pk}/merge"
    theirs = RunFactory(session=SessionFactory(owner=other_user))
    before = counts()
    src = str(side[-1].pk)
    for payload, status in [
        ({"source_run_id": src, "mode": "both"}, 400),
        ({"source_run_id": src, "mode": "turns", "run_ids": [str(main[0].pk)]}, 400),  # on the target already
        ({"source_run_id": src, "mode": "turns", "run_ids": []}, 400),
        ({"source_run_id": src, "mode": "digest", "digest": "   "}, 400),
        ({"source_run_id": src, "mode": "digest", "draft_run_id": str(main[0].pk)}, 404),  # not a draft
        ({"source_run_id": src, "mode": "digest", "dry_run": True}, 400),  # no digest: no model call here
        ({"source_run_id": str(main[0].pk), "mode": "turns"}, 400),  # nothing the target lacks
        ({"source_run_id": "not-a-uuid", "mode": "turns"}, 400),
        ({"source_run_id": str(theirs.pk), "mode": "turns"}, 404),
    ]:
        answer = post_json(api, url, payload)
        assert answer.status_code == status, (payload, answer.content)
        assert answer.json()["detail"]
    assert counts() == before
    assert post_json(api, f"/api/runs/{theirs.pk}/merge", {"source_run_id": src, "mode": "turns"}).status_code == 404
    assert api.post(f"/api/runs/{theirs.pk}/merge/undo").status_code == 404


def test_merge_undo_prunes_the_turn_and_returns_to_the_target(api, tree, settings):
    session, main, side = tree["session"], tree["main"], tree["side"]
    merged = post_json(api, f"/api/runs/{main[-1].pk}/merge", {"source_run_id": str(side[-1].pk), "mode": "turns",
                                                               "run_ids": [str(side[3].pk)]}).json()
    assert api.post(f"/api/runs/{main[-1].pk}/merge/undo").status_code == 404  # not a merge turn
    undo = api.post(f"/api/runs/{merged['run_id']}/merge/undo")
    assert undo.status_code == 200, undo.content
    assert undo.json()["active_run_id"] == str(main[-1].pk)
    nodes = api.get(f"/api/sessions/{session.pk}/tree").json()["runs"]
    assert merged["run_id"] not in {n["run_id"] for n in nodes}
    assert not any(n["provenance"] for n in nodes)
    settings.ARBOR_UNDO_DELETE_SECONDS = 0
    again = post_json(api, f"/api/runs/{main[-1].pk}/merge", {"source_run_id": str(side[-1].pk), "mode": "turns",
                                                              "run_ids": [str(side[3].pk)]}).json()
    late = api.post(f"/api/runs/{again['run_id']}/merge/undo")
    assert late.status_code == 404 and "undo time" in late.json()["detail"]


def test_pruning_a_source_keeps_the_merge_turn_and_marks_the_link(api, user, tree):
    session, main, side = tree["session"], tree["main"], tree["side"]
    merged = post_json(api, f"/api/runs/{main[-1].pk}/merge", {"source_run_id": str(side[-1].pk), "mode": "turns",
                                                               "run_ids": [str(side[5].pk)]}).json()
    branch_tools.prune_subtree(session=session, run=side[0])
    got = api.get(f"/api/runs/{merged['run_id']}").json()
    assert got["status"] == "succeeded" and got["provenance"]["source_pruned"]
    assert got["provenance"]["sources"][0]["pruned"]
    assert [m.content for m in Message.objects.path(merged["run_id"])][-2:] == ["question 7", "answer 7"]


def test_path_reads_keep_their_query_count_with_merges(tree, user):
    session, main, side = tree["session"], tree["main"], tree["side"]
    plan = services.merge_plan(session=session, target=main[-1], source=side[-1], mode="turns",
                               run_ids=[side[1].pk, side[4].pk])
    merge = services.merge_create(session=session, plan=plan)
    child = RunFactory(session=session, parent_run=merge)
    with CaptureQueriesContext(connection) as plain:
        Message.objects.path(main[-1])
    with CaptureQueriesContext(connection) as merged:
        messages = Message.objects.path(child)
    assert len(plain) == len(merged) == 1
    assert [m.content for m in messages][-6:] == ["question 3", "answer 3", "question 6", "answer 6",
                                                  "question 5", "answer 5"]
    with CaptureQueriesContext(connection) as plain_window:
        paths.branch_window(session, main[-1].pk, 3)
    with CaptureQueriesContext(connection) as merged_window:
        turns = paths.branch_window(session, child.pk, 3)
    assert len(plain_window) == len(merged_window)
    assert merge.pk in [t.run.pk for t in turns]


def test_keyword_search_finds_a_digest_on_its_merge_turn(user, tree):
    session, main, side = tree["session"], tree["main"], tree["side"]
    plan = services.merge_plan(session=session, target=main[-1], source=side[-1], mode="digest",
                               digest="The xylophone route was chosen.")
    merge = services.merge_create(session=session, plan=plan)
    hits = keyword_search(user=user, query="xylophone", top_k=5)
    assert [(h.run_id, h.role) for h in hits] == [(str(merge.pk), "user")]
