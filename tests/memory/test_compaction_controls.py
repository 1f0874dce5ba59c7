"""Compaction you can see and steer: the marker line, Expand (summary + replaced turns), Edit
summary (a new version, sent from the next context on, audited), Undo (raw turns again, or how
many tokens over), Compact now (background, target 0), a failed summary keeping the raw context;
summaries shared down the tree: 5 siblings under one compacted prefix make 1 summary call."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditLog
from conversations import context_spec as ctx
from engine.compaction import compaction_consider, compaction_execute
from engine.context import SUMMARY_HEADER
from memory import services as memory_services
from memory.models import Compaction, CompactionStatus, SharedSummary
from tests.memory.conftest import built_for, contents, estimate_counter
from tests.support.factories import SessionFactory, add_chain, add_run, new_input

pytestmark = pytest.mark.django_db


def _agent(make_agent, reply="S1", **policy):
    return make_agent(context_window=600, reserved_output_tokens=100, model="fake-model", compaction={
        "threshold": 0.5, "target": 0.3,
        "strategies": [{"type": "summarize", "keep_recent_turns": 2, "max_tokens": 64,
                        "prompt": f"[[reply:{reply}]] Summarise."}], **policy})


def _compacted(user, make_agent, django_capture_on_commit_callbacks, turns=12):
    agent = _agent(make_agent)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, turns, agent=agent, words=10)
    with django_capture_on_commit_callbacks(execute=False):
        pending = compaction_consider(run=runs[-1], counter=estimate_counter())
    return agent, session, runs, compaction_execute(compaction_id=pending.pk)


def _summaries(llm_server) -> int:
    return sum(1 for r in llm_server.requests if "messages" in r["body"] and not r["body"].get("stream"))


def test_the_marker_says_which_turns_how_many_tokens_by_whom_and_when(user, make_agent, llm_server,
                                                                      django_capture_on_commit_callbacks):
    agent, session, runs, done = _compacted(user, make_agent, django_capture_on_commit_callbacks)
    assert done.status == CompactionStatus.READY and done.from_depth == 10
    marker = done.marker
    assert marker.startswith(f"Turns 1–10 summarised: {done.tokens_before:,} → {done.tokens_after:,} tokens · by ")
    assert " · fake-model · " in marker and done.tokens_after < done.tokens_before


def test_a_model_call_names_the_summary_it_sent_and_still_verifies_after_an_edit(
        user, make_agent, llm_server, django_capture_on_commit_callbacks):
    """The stored spec references the summary by compaction id and version instead of copying its
    text; an edit adds a version, so an earlier call still rebuilds byte for byte and hash-verifies,
    and the next context names the new version. Specs stored with the text rebuild as they are."""
    agent, session, runs, done = _compacted(user, make_agent, django_capture_on_commit_callbacks)
    run = new_input(session, runs[-1], agent=agent)
    first = built_for(run)
    spec = first.spec.to_json()
    assert spec["summary"] == {"id": done.pk, "version": 1} and "S1" not in str(spec)
    request = {"context": spec, "sha256": ctx.digest(first.messages)}

    memory_services.summary_edit(user=user, compaction=done, text="The user is Ada.")
    checked = ctx.verify(run, request)
    assert checked["verified"] is True and checked["messages"] == first.messages
    assert checked["messages"][1]["content"] == SUMMARY_HEADER + "S1"
    later = built_for(new_input(session, runs[-1], agent=agent))
    assert later.spec.summary == {"id": done.pk, "version": 2}
    assert later.messages[1]["content"] == SUMMARY_HEADER + "The user is Ada."

    stored_text = {**spec, "summary": {"id": done.pk, "text": SUMMARY_HEADER + "S1"}}
    assert ctx.verify(run, {"context": stored_text, "sha256": request["sha256"]})["verified"] is True
    gone = {**spec, "summary": {"id": done.pk, "version": 7}}
    assert ctx.verify(run, {"context": gone, "sha256": request["sha256"]})["verified"] is False


def test_expand_edit_and_undo_through_the_api(api, user, make_agent, llm_server, django_capture_on_commit_callbacks):
    agent, session, runs, done = _compacted(user, make_agent, django_capture_on_commit_callbacks)
    expanded = api.get(f"/api/compactions/{done.pk}").json()
    assert expanded["summary"] == "S1" and expanded["turns"] == "1–10"
    first_turn = [m.content for m in runs[0].messages.order_by("position")]
    assert [r["content"] for r in expanded["replaced"]][:2] == first_turn
    assert len(expanded["replaced"]) == 20

    before = built_for(new_input(session, runs[-1], agent=agent))
    assert before.messages[1]["content"] == SUMMARY_HEADER + "S1"
    edited = api.post(f"/api/compactions/{done.pk}/summary", {"summary": "The user is Ada."},
                      content_type="application/json")
    assert edited.status_code == 200 and edited.json()["versions"] == 1
    later = built_for(new_input(session, runs[-1], agent=agent))
    assert later.messages[1]["content"] == SUMMARY_HEADER + "The user is Ada."
    row = AuditLog.objects.get(action="compaction.summary_edit")
    assert row.details["summary"] == "The user is Ada." and row.details["previous"] == "S1"

    for bad in ({"summary": "   "}, {"summary": 5}, {}):
        response = api.post(f"/api/compactions/{done.pk}/summary", bad, content_type="application/json")
        assert response.status_code == 400 and response.json()["detail"], bad
    done.refresh_from_db()
    assert done.summary == "The user is Ada." and len(done.versions) == 1

    undone = api.post(f"/api/compactions/{done.pk}/undo")
    assert undone.status_code == 200 and undone.json()["compaction"]["status"] == "undone"
    assert undone.json()["note"].startswith("Undone.")
    raw = built_for(new_input(session, runs[-1], agent=agent))
    assert not any(c.startswith(SUMMARY_HEADER) for c in contents(raw))
    assert AuditLog.objects.filter(action="compaction.undo").count() == 1
    assert api.post(f"/api/compactions/{done.pk}/undo").status_code == 409
    assert api.post(f"/api/compactions/{done.pk}/summary", {"summary": "x"},
                    content_type="application/json").status_code == 409


def test_undo_says_how_many_tokens_over_now(user, make_agent, llm_server, django_capture_on_commit_callbacks):
    """The figure is measured when Undo is pressed, not when the compaction was made: here the agent's
    reserved output grew since, so the usable window is smaller now."""
    from engine.context import measure_next
    from memory import services

    agent, session, runs, done = _compacted(user, make_agent, django_capture_on_commit_callbacks, turns=30)
    agent.reserved_output_tokens = 250
    agent.save(update_fields=["reserved_output_tokens"])
    _, note = services.compaction_undo(user=user, compaction=done)
    raw = measure_next(done.run)  # the compaction is undone: the raw turns, with the endpoint's counter
    needed, usable = raw.fixed_tokens + raw.history_tokens, raw.budget.usable
    assert usable == 350 != done.usable_window and needed > usable
    assert f"need {needed:,} tokens now: {needed - usable:,} over the usable window of {usable:,}" in note
    assert "keep the last N turns" in note
    assert AuditLog.objects.get(action="compaction.undo").details == {
        "run_id": str(done.run_id), "over_by": needed - usable, "needed": needed, "usable_window": usable}


def test_undo_within_the_window_says_so(user, make_agent, llm_server, django_capture_on_commit_callbacks):
    from memory import services

    agent, session, runs, done = _compacted(user, make_agent, django_capture_on_commit_callbacks)
    agent.context_window = 20_000
    agent.save(update_fields=["context_window"])
    _, note = services.compaction_undo(user=user, compaction=done)
    assert note.startswith("Undone. Later contexts send the raw turns: ") and "within the usable 19,900." in note


def test_another_users_compaction_is_404(api, other_user, make_agent, llm_server, django_capture_on_commit_callbacks):
    _, _, runs, done = _compacted(other_user, make_agent, django_capture_on_commit_callbacks)
    assert api.get(f"/api/compactions/{done.pk}").status_code == 404
    assert api.post(f"/api/compactions/{done.pk}/undo").status_code == 404
    assert api.post(f"/api/compactions/{done.pk}/summary", {"summary": "mine"},
                    content_type="application/json").status_code == 404
    assert api.post(f"/api/runs/{runs[-1].pk}/compact").status_code == 404
    done.refresh_from_db()
    assert done.status == CompactionStatus.READY and done.summary == "S1"


def test_compact_now_runs_in_the_background_with_every_strategy(api, user, make_agent, llm_server,
                                                                django_capture_on_commit_callbacks):
    agent = _agent(make_agent, reply="NOW")
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 5, agent=agent)  # far under the threshold
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(f"/api/runs/{runs[-1].pk}/compact")
    assert response.status_code == 202 and response.json()["status"] == "pending" and len(callbacks) == 1
    assert api.post(f"/api/runs/{runs[-1].pk}/compact").status_code == 409, "one in progress already"
    done = compaction_execute(compaction_id=response.json()["id"])
    assert done.status == CompactionStatus.READY and done.summary == "NOW" and done.from_depth == 3
    assert done.tokens_before > done.tokens_after > 0
    assert AuditLog.objects.filter(action="compaction.request", target_id=str(done.pk)).exists()
    Compaction.objects.all().delete()
    agent.compaction = {"strategies": [{"type": "burn"}]}
    agent.save(update_fields=["compaction"])  # an invalid stored policy (the admin would refuse it)
    bad = api.post(f"/api/runs/{runs[-2].pk}/compact")
    assert bad.status_code == 400 and "strateg" in bad.json()["detail"] and not Compaction.objects.exists()


def test_a_failed_summary_keeps_the_raw_context_and_says_why(user, make_agent, llm_server,
                                                            django_capture_on_commit_callbacks, client):
    agent = _agent(make_agent, reply="x]] [[status:400")
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 12, agent=agent, words=10)
    with django_capture_on_commit_callbacks(execute=False):
        pending = compaction_consider(run=runs[-1], counter=estimate_counter())
    failed = compaction_execute(compaction_id=pending.pk)
    assert failed.status == CompactionStatus.FAILED
    assert failed.marker.startswith("Compaction failed: ") and "HTTP 400" in failed.marker
    assert failed.marker.endswith("the raw turns are sent")
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert not any(c.startswith(SUMMARY_HEADER) for c in contents(built))
    client.force_login(user)
    page = client.get(reverse("chatmemory:compaction", args=[failed.pk])).content.decode()
    assert "HTTP 400" in page


def test_five_siblings_under_one_compacted_prefix_make_one_summary_call(user, make_agent, llm_server,
                                                                        django_capture_on_commit_callbacks):
    """Five regenerated answers (siblings) of the same last turn each cross the threshold; their
    compactions summarise the same prefix: one summary call, the others reuse it."""
    agent = _agent(make_agent, reply="SHARED")
    session = SessionFactory(owner=user)
    trunk = add_chain(session, None, 11, agent=agent, words=5)
    siblings = [add_run(session, trunk[-1], f"sibling {i} " + "filler " * 5, "answer " + "filler " * 5,
                        agent=agent) for i in range(5)]
    llm_server.reset()
    done = []
    for sibling in siblings:
        with django_capture_on_commit_callbacks(execute=False):
            pending = compaction_consider(run=sibling, counter=estimate_counter())
        assert pending is not None, "each sibling is over the threshold"
        done.append(compaction_execute(compaction_id=pending.pk))
    assert _summaries(llm_server) == 1, "one summary request (the prefix fits one request)"
    assert {c.summary for c in done} == {"SHARED"} and {c.status for c in done} == {CompactionStatus.READY}
    assert SharedSummary.objects.get().uses == 5
    assert [bool(c.applied[0]["shared"]) for c in done] == [False, True, True, True, True]
    for sibling in siblings:
        built = built_for(new_input(session, sibling, agent=agent))
        assert built.messages[1]["content"] == SUMMARY_HEADER + "SHARED"


def test_the_pages_expand_edit_undo_and_compact_now(client, user, make_agent, llm_server,
                                                    django_capture_on_commit_callbacks):
    agent, session, runs, done = _compacted(user, make_agent, django_capture_on_commit_callbacks)
    client.force_login(user)
    url = reverse("chatmemory:compaction", args=[done.pk])
    page = client.get(url).content.decode()
    assert done.marker in page and runs[0].messages.first().content in page
    assert client.post(url, {"summary": ""}).status_code == 400
    assert client.post(url, {"summary": "Edited on the page."}).status_code == 302
    done.refresh_from_db()
    assert done.summary == "Edited on the page."
    assert client.post(reverse("chatmemory:compaction_undo", args=[done.pk])).status_code == 302
    done.refresh_from_db()
    assert done.status == CompactionStatus.UNDONE
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("chatmemory:compact", args=[runs[-1].pk]))
    assert response.status_code == 302 and len(callbacks) == 1
    done.refresh_from_db()
    assert done.status == CompactionStatus.PENDING and done.versions, "the earlier texts are kept"
