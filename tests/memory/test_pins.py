"""Pins: a pinned turn or message is sent verbatim in every later context on a branch below it,
whatever the window, budget, compaction or memory id; pins alone over budget fail the run naming
them; compaction never summarises a pinned message; the pins API (404 cross-user, 400 writes
nothing) and its audit rows; the parts breakdown of a built context."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditLog
from conversations.models import Message
from engine.compaction import compaction_consider, compaction_execute
from engine.context import SUMMARY_HEADER, ContextOverflow
from memory.models import Compaction, CompactionStatus, Pin
from tests.memory.conftest import built_for, contents, estimate_counter
from tests.support.factories import SessionFactory, add_chain, add_run, new_input

pytestmark = pytest.mark.django_db


def test_a_pinned_turn_stays_verbatim_in_every_later_context_of_a_long_chat(user, make_agent):
    """Turn 3 (depth 2) of a 60-turn chat with a 4-message window is in every later context, in
    place, word for word; turns the window leaves out stay out."""
    agent = make_agent(memory_window_size=4)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 60, agent=agent)
    Pin.objects.create(run=runs[2], created_by=user)
    for parent in runs[5::6] + [runs[-1]]:
        built = built_for(new_input(session, parent, agent=agent))
        sent = contents(built)
        assert sent[1:3] == ["turn 2 question", "turn 2 answer"], parent.depth
        assert "turn 1 answer" not in sent and "turn 3 question" not in sent
        assert built.spec.pinned == sorted(m.pk for m in runs[2].messages.all())
        assert len(sent) == 1 + 2 + 4 + 1, "system, the pin, the window of 4, the new input"


def test_a_pin_on_a_shared_ancestor_holds_on_every_branch_below_it_and_nowhere_else(user):
    session = SessionFactory(owner=user)
    trunk = add_chain(session, None, 3)
    left = add_chain(session, trunk[-1], 2, prefix="left")
    right = add_chain(session, trunk[-1], 2, prefix="right")
    Pin.objects.create(run=trunk[0])
    Pin.objects.create(run=left[0])
    for branch in (left, right):
        assert Pin.objects.filter(run=trunk[0]).exists()
        assert len(built_for(new_input(session, branch[-1])).spec.pinned) == (4 if branch is left else 2)
    right_context = built_for(new_input(session, right[-1]))
    assert "left 0 question" not in contents(right_context)


def test_a_pinned_message_survives_the_budget_and_a_summary(user, make_agent):
    """With a ready summary covering turns 1–8 and a tight budget, the pinned answer of turn 2 is still
    sent, verbatim (not the compaction's replacement), after the summary."""
    agent = make_agent(context_window=400, reserved_output_tokens=60)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 30, agent=agent, words=8)
    answer = runs[1].messages.get(position=1)
    Compaction.objects.create(run=runs[20], memory_id=agent.memory_id, status=CompactionStatus.READY, from_depth=8,
                              summary="Earlier: pleasantries.", replaced={str(answer.pk): "[cut]"})
    Pin.objects.create(run=runs[1], message=answer)
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert built.messages[1]["content"] == SUMMARY_HEADER + "Earlier: pleasantries."
    assert built.messages[2] == {"role": "assistant", "content": answer.content}
    assert built.budget_dropped > 0 and built.tokens <= built.budget.usable
    parts = built.parts()
    assert [row["part"] for row in parts["messages"]][:3] == ["system", "summary", "pin"]
    assert sum(parts["totals"].values()) == built.tokens
    assert any("summarised" in note and "turns 1–8" in note.lower() for note in parts["not_seen"])


def test_pins_alone_over_the_budget_fail_naming_them(user, make_agent):
    agent = make_agent(context_window=200, reserved_output_tokens=50)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 6, agent=agent, words=60)
    Pin.objects.create(run=runs[1])
    Pin.objects.create(run=runs[3])
    with pytest.raises(ContextOverflow) as caught:
        built_for(new_input(session, runs[-1], agent=agent))
    message = str(caught.value)
    assert "turn 2 (messages" in message and "turn 4 (messages" in message and "over the usable" in message


def test_a_pinned_tool_call_is_sent_with_its_results(user, make_agent):
    agent = make_agent(memory_window_size=2)
    session = SessionFactory(owner=user)
    traffic = [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "12:00"}]
    first = add_run(session, None, "what time", "noon", agent=agent, tool_traffic=traffic)
    runs = add_chain(session, first, 5, agent=agent)
    call = first.messages.get(position=1)
    Pin.objects.create(run=first, message=call)
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert [m["role"] for m in built.messages[1:3]] == ["assistant", "tool"]
    assert [row["part"] for row in built.parts()["messages"]][1:3] == ["pin", "pin"]


def test_compaction_never_summarises_a_pinned_turn(user, make_agent, llm_server, django_capture_on_commit_callbacks):
    agent = make_agent(context_window=600, reserved_output_tokens=100, compaction={
        "threshold": 0.5, "target": 0.3, "strategies": [
            {"type": "summarize", "keep_recent_turns": 2, "max_tokens": 64, "prompt": "[[reply:S.]] Summarise."}]})
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 12, agent=agent, words=10)
    Pin.objects.create(run=runs[3])
    llm_server.reset()
    with django_capture_on_commit_callbacks(execute=False):
        pending = compaction_consider(run=runs[-1], counter=estimate_counter())
    done = compaction_execute(compaction_id=pending.pk)
    assert done.status == CompactionStatus.READY
    prompt = "\n".join(r["body"]["messages"][-1]["content"] for r in llm_server.requests)
    assert "turn 2 question" in prompt and "turn 3 question" not in prompt
    pinned = {m.pk for m in runs[3].messages.all()}
    assert not pinned & set(done.replaced_message_ids)
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert built.messages[1]["content"] == SUMMARY_HEADER + "S."
    assert contents(built)[2].startswith("turn 3 question")


# --- the API ------------------------------------------------------------------------------------

def test_pin_api_create_list_delete_and_audit(api, user):
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 4)
    url = f"/api/runs/{runs[1].pk}/pins"
    made = api.post(url, {}, content_type="application/json")
    assert made.status_code == 201 and made.json()["turn"] == 2 and made.json()["message_id"] is None
    again = api.post(url, {}, content_type="application/json")
    assert again.status_code == 409 and f"pin {made.json()['id']}" in again.json()["detail"]
    answer = runs[1].messages.get(position=1)
    one = api.post(url, {"message_id": answer.pk}, content_type="application/json")
    assert one.status_code == 201 and one.json()["role"] == "assistant" and one.json()["excerpt"] == answer.content
    listed = api.get(f"/api/runs/{runs[-1].pk}/pins").json()
    assert [p["id"] for p in listed] == [made.json()["id"], one.json()["id"]]
    assert api.get(f"/api/runs/{runs[0].pk}/pins").json() == [], "a pin holds below its turn, not above"
    assert AuditLog.objects.filter(action="pin.create").count() == 2
    assert api.delete(f"/api/pins/{one.json()['id']}").status_code == 204
    assert AuditLog.objects.filter(action="pin.delete", details__message_id=answer.pk).exists()
    assert Pin.objects.count() == 1


def test_pin_api_refuses_bad_input_and_other_users(api, user, other_user):
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 3)
    foreign = Message.objects.filter(run=runs[0]).first()
    for body in ({"message_id": foreign.pk}, {"message_id": "x"}, {"message_id": 10**30}):
        response = api.post(f"/api/runs/{runs[1].pk}/pins", body, content_type="application/json")
        assert response.status_code == 400 and response.json()["detail"], body
    theirs = add_chain(SessionFactory(owner=other_user), None, 1)[0]
    assert api.post(f"/api/runs/{theirs.pk}/pins", {}, content_type="application/json").status_code == 404
    assert api.get(f"/api/runs/{theirs.pk}/pins").status_code == 404
    their_pin = Pin.objects.create(run=theirs)
    assert api.delete(f"/api/pins/{their_pin.pk}").status_code == 404
    assert api.post("/api/runs/not-a-uuid/pins", {}, content_type="application/json").status_code == 404
    assert Pin.objects.count() == 1
    assert AuditLog.objects.filter(action__startswith="pin.").count() == 1, "only the test's own pin.create"


def test_a_pin_from_another_memory_id_is_a_part_of_its_own(user, make_agent):
    """Memory ids isolate history, but a pin crosses them: the pinned turn of another memory id is
    sent, labelled ``memory`` (not ``pin``) in the parts and their totals; its unpinned turns are not sent."""
    agent = make_agent(memory_id="default")
    session = SessionFactory(owner=user)
    mine = add_chain(session, None, 2, agent=agent)
    notes = add_chain(session, mine[-1], 2, prefix="notes", memory_id="notes")
    tail = add_chain(session, notes[-1], 1, prefix="after", agent=agent)
    Pin.objects.create(run=notes[0])
    Pin.objects.create(run=mine[0])
    built = built_for(new_input(session, tail[-1], agent=agent))
    parts = built.parts()
    labelled = dict(zip(contents(built), (row["part"] for row in parts["messages"]), strict=True))
    assert labelled["notes 0 question"] == labelled["notes 0 answer"] == "memory"
    assert labelled["turn 0 question"] == "pin" and labelled["turn 1 answer"] == "history"
    assert "notes 1 question" not in labelled
    assert parts["totals"]["memory"] == sum(row["message_tokens"] for row in parts["messages"]
                                            if row["part"] == "memory") > 0
    assert any("another memory id (notes)" in note for note in parts["not_seen"])


def test_the_chat_marks_pinned_turns_and_messages(client, user):
    """A pinned turn shows a pin mark in its head (a link to the Pinned list with an accessible name),
    a pinned answer "Answer pinned"; the marks cost no query."""
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 4)
    session.active_run = runs[-1]
    session.save()
    client.force_login(user)
    url = f"/s/{session.pk}/"
    client.get(url)
    with CaptureQueriesContext(connection) as before:
        unpinned = client.get(url).content.decode()
    assert "pin-mark-" not in unpinned and "Pin turn 2" in unpinned
    Pin.objects.create(run=runs[1])
    Pin.objects.create(run=runs[3], message=runs[3].messages.get(position=1))
    with CaptureQueriesContext(connection) as after:
        html = client.get(url).content.decode()
    assert len(after) == len(before), "the pin state comes with the messages"
    assert html.count('class="badge pinned"') == 2
    mark = html[html.index(f'id="pin-mark-{runs[1].pk}"'):].split("</a>")[0]
    assert 'aria-label="Pinned: turn 2, see the Pinned list"' in mark and mark.endswith("</svg>Pinned")
    assert f'href="/memory/runs/{runs[1].pk}/pinned"' in mark
    assert f'id="pin-mark-{runs[3].pk}"' in html and "Answer pinned" in html
    assert "Unpin turn 2" in html and "Pin turn 4" in html, "the menu says what pressing does"
