"""Compaction: summaries attached to runs, reused by descendants, invisible to other branches;
fallback to truncation while a summary is pending; strategies in order; incremental summaries;
every compaction recorded. The summariser calls the scripted model server over real HTTP."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from conversations.models import Run, Step, StepKind
from engine.compaction import compaction_consider, compaction_execute
from engine.context import SUMMARY_HEADER, agent_budget, read_path
from memory.models import Compaction, CompactionStatus
from memory.policy import parse_policy
from tests.memory.conftest import built_for, contents, estimate_counter
from tests.support.factories import SessionFactory, add_chain, add_run, new_input

pytestmark = pytest.mark.django_db


def test_a_summary_is_reused_by_descendants_and_invisible_to_other_branches(user, make_agent):
    """A ready compaction on run 3 (covering turns 0–1) shapes every context below run 3; a branch
    leaving the path above run 3 sees the full history and no summary."""
    agent = make_agent()
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 6, agent=agent)
    Compaction.objects.create(run=runs[3], memory_id=agent.memory_id, status=CompactionStatus.READY, from_depth=2,
                              summary="The user likes PELICAN-42.")
    summary = {"role": "system", "content": SUMMARY_HEADER + "The user likes PELICAN-42."}

    below = built_for(new_input(session, runs[5], agent=agent))
    assert below.messages[1] == summary
    assert contents(below)[2:] == [f"turn {i} {w}" for i in range(2, 6) for w in ("question", "answer")] + ["new input"]

    directly_below = built_for(new_input(session, runs[3], agent=agent))
    assert directly_below.messages[1] == summary

    other_branch = add_run(session, runs[2], "other branch q", "other branch a", agent=agent)
    elsewhere = built_for(new_input(session, other_branch, agent=agent))
    assert summary not in elsewhere.messages
    assert contents(elsewhere)[1:3] == ["turn 0 question", "turn 0 answer"]

    sibling_of_3 = built_for(new_input(session, runs[2], agent=agent))
    assert summary not in sibling_of_3.messages


def test_a_summary_belongs_to_its_memory_id(user, make_agent):
    """A summary made for one memory id is not sent to an agent with another memory id."""
    team = make_agent(memory_id="team")
    solo = make_agent(memory_id="solo")
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 3, agent=team)
    Compaction.objects.create(run=runs[2], memory_id="team", status=CompactionStatus.READY, from_depth=1,
                              summary="team secrets")
    assert "team secrets" in contents(built_for(new_input(session, runs[2], agent=team)))[1]
    assert contents(built_for(new_input(session, runs[2], agent=solo))) == [
        "You are a helpful assistant.", "new input"]


def test_while_the_summary_is_pending_the_context_falls_back_to_truncation(user, make_agent):
    """A pending compaction is ignored; the budget drops the oldest turns and the context fits."""
    agent = make_agent(context_window=300, reserved_output_tokens=60)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 20, agent=agent, words=10)
    Compaction.objects.create(run=runs[-1], memory_id=agent.memory_id, status=CompactionStatus.PENDING)
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert built.pending
    assert not any(m["content"].startswith(SUMMARY_HEADER) for m in built.messages)
    assert built.tokens <= 240 and built.budget_dropped > 0
    assert built.messages[-2]["content"].startswith("turn 19 answer")


def _long_agent(make_agent, **policy):
    return make_agent(context_window=600, reserved_output_tokens=100, compaction={
        "threshold": 0.5, "target": 0.3,
        "strategies": [{"type": "summarize", "keep_recent_turns": 2, "max_tokens": 64,
                        "prompt": "[[reply:SUMMARY: the user's code word is PELICAN-42.]] Summarise."}],
        **policy,
    })


def test_compaction_fires_above_the_threshold_and_is_recorded(user, make_agent, llm_server,
                                                            django_capture_on_commit_callbacks):
    """Above the threshold a pending compaction is created (the task is enqueued after commit);
    executing it summarises the older turns with the agent's model and records everything."""
    agent = _long_agent(make_agent, )
    agent.model = "agent-model"
    agent.save()
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 12, agent=agent, words=10)
    assert compaction_consider(run=runs[2], counter=estimate_counter()) is None, "under the threshold: nothing"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pending = compaction_consider(run=runs[-1], counter=estimate_counter())
    assert pending is not None and pending.status == CompactionStatus.PENDING and len(callbacks) == 1
    assert pending.utilisation_before > 0.5

    done = compaction_execute(compaction_id=pending.pk)
    assert done.status == CompactionStatus.READY
    assert done.summary == "SUMMARY: the user's code word is PELICAN-42."
    assert done.model == "agent-model", "the summariser uses the agent's own model"
    assert llm_server.requests[-1]["body"]["model"] == "agent-model"
    assert done.from_depth == 10 and done.utilisation_after < done.utilisation_before
    older = [m.pk for r in runs[:10] for m in r.messages.all()]
    assert sorted(done.replaced_message_ids) == sorted(older)
    assert done.prompt_tokens > 0 and done.completion_tokens > 0
    assert [a["type"] for a in done.applied] == ["summarize"]
    step = Step.objects.get(run=runs[-1], kind=StepKind.COMPACTION)
    assert step.status == "succeeded" and step.response["summary"] == done.summary
    assert step.request["utilisation_before"] == pending.utilisation_before

    built = built_for(new_input(session, runs[-1], agent=agent))
    assert built.messages[1]["content"] == SUMMARY_HEADER + done.summary
    assert contents(built)[2:] == [f"turn {i} {w} " + " ".join(["filler"] * 10) for i in (10, 11)
                                   for w in ("question", "answer")] + ["new input"]

    assert compaction_execute(compaction_id=pending.pk) is None, "a second delivery does nothing"
    assert Step.objects.filter(kind=StepKind.COMPACTION).count() == 1


def test_a_later_summary_builds_on_the_earlier_one(user, make_agent, llm_server, django_capture_on_commit_callbacks):
    """The second summary is made from the first summary plus only the turns after it."""
    agent = _long_agent(make_agent)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 12, agent=agent, words=10)
    with django_capture_on_commit_callbacks(execute=False):
        first = compaction_consider(run=runs[-1], counter=estimate_counter())
    first = compaction_execute(compaction_id=first.pk)
    more = add_chain(session, runs[-1], 12, agent=agent, words=10, prefix="later")
    llm_server.reset()
    with django_capture_on_commit_callbacks(execute=False):
        second = compaction_consider(run=more[-1], counter=estimate_counter())
    second = compaction_execute(compaction_id=second.pk)
    assert second.status == CompactionStatus.READY and second.base_id == first.pk
    prompts = [r["body"]["messages"][-1]["content"] for r in llm_server.requests]
    assert "Conversation:\nEarlier (summary of what came before): SUMMARY: the user's code word is PELICAN-42.\n" \
        in prompts[0]
    everything = "\n".join(prompts)
    assert "turn 0 question" not in everything and "turn 9 answer" not in everything, "earlier turns are not re-read"
    assert "turn 10 question" in everything and "later 9 answer" in everything
    assert second.from_depth == more[-2].depth


def test_strategies_run_in_order_until_under_the_target(user, make_agent, django_capture_on_commit_callbacks):
    """tool_results truncation then keep_last_turns: the replacements and the cut apply to
    descendants; tool call/result pairs stay intact."""
    agent = make_agent(context_window=1200, reserved_output_tokens=100, compaction={
        "threshold": 0.5, "target": 0.2,
        "strategies": [{"type": "tool_results", "max_chars": 40, "action": "truncate"},
                       {"type": "keep_last_turns", "turns": 3}],
    })
    session = SessionFactory(owner=user)
    parent = None
    tool_ids = []
    for i in range(8):
        call = [{"id": f"c{i}", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}]
        parent = add_run(session, parent, f"q{i}", f"a{i}", agent=agent, tool_traffic=[
            {"role": "assistant", "content": "", "tool_calls": call},
            {"role": "tool", "tool_call_id": f"c{i}", "name": "calculator", "content": "x" * 400},
        ])
        tool_ids.append(parent.messages.get(role="tool").pk)
    with django_capture_on_commit_callbacks(execute=False):
        pending = compaction_consider(run=parent, counter=estimate_counter())
    done = compaction_execute(compaction_id=pending.pk)
    assert [a["type"] for a in done.applied] == ["tool_results", "keep_last_turns"]
    assert done.applied[0]["utilisation_after"] < done.applied[0]["utilisation_before"]
    assert done.from_depth == 5 and not done.summary
    built = built_for(new_input(session, parent, agent=agent))
    tool_messages = [m for m in built.messages if m["role"] == "tool"]
    assert len(tool_messages) == 3
    assert all(m["content"].startswith("x" * 40 + "\n[… 360 more characters truncated") for m in tool_messages)
    assert [m["content"] for m in built.messages if m["role"] == "user"] == ["q5", "q6", "q7", "new input"]


def test_keep_last_turns_alone_drops_older_turns(user, make_agent, django_capture_on_commit_callbacks):
    agent = make_agent(context_window=400, reserved_output_tokens=50, compaction={
        "threshold": 0.3, "strategies": [{"type": "keep_last_turns", "turns": 2}]})
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 10, agent=agent, words=10)
    with django_capture_on_commit_callbacks(execute=False):
        pending = compaction_consider(run=runs[-1], counter=estimate_counter())
    compaction_execute(compaction_id=pending.pk)
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert [m["content"].split(" filler")[0] for m in built.messages[1:]] == [
        "turn 8 question", "turn 8 answer", "turn 9 question", "turn 9 answer", "new input"]


def test_no_second_compaction_while_one_is_pending_on_the_path(user, make_agent, django_capture_on_commit_callbacks):
    agent = _long_agent(make_agent)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 14, agent=agent, words=10)
    with django_capture_on_commit_callbacks(execute=False):
        assert compaction_consider(run=runs[-2], counter=estimate_counter()) is not None
        assert compaction_consider(run=runs[-1], counter=estimate_counter()) is None


def _turn_read(run):
    """What the engine's turn read of ``run``'s path (its slice, carrying the compactions and pins,
    with ``run``'s own messages), as finalize passes it to compaction's measuring."""
    run = Run.objects.select_related("agent").get(pk=run.pk)
    path, memory_ids = read_path(run, run.agent)
    return run, {"path": path, "memory_ids": memory_ids, "counter": estimate_counter(),
                 "budget": agent_budget(run, run.agent)}


def test_measuring_after_a_turn_under_the_threshold_sends_no_query(user, make_agent, django_assert_num_queries):
    """The turn's slice carries the compactions and pins read at its start: under the threshold
    compaction's measuring reads nothing more."""
    agent = _long_agent(make_agent)
    runs = add_chain(SessionFactory(owner=user), None, 3, agent=agent, words=10)
    run, measured_with = _turn_read(runs[-1])
    with django_assert_num_queries(0):
        assert compaction_consider(run=run, **measured_with) is None


def test_a_compaction_that_became_ready_during_the_turn_is_measured_with(user, make_agent,
                                                                          django_capture_on_commit_callbacks):
    """Measured with what the turn read at its start, the path is over the threshold; a compaction
    that became ready since brings it under, so no second one is made."""
    agent = _long_agent(make_agent)
    runs = add_chain(SessionFactory(owner=user), None, 12, agent=agent, words=10)
    run, measured_with = _turn_read(runs[-1])
    Compaction.objects.create(run=runs[9], memory_id=agent.memory_id, status=CompactionStatus.READY, from_depth=8,
                              summary="SUMMARY: short.")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert compaction_consider(run=run, **measured_with) is None
    assert callbacks == [] and Compaction.objects.filter(run__session=run.session).count() == 1

    Compaction.objects.all().delete()  # without it the same figures are over the threshold: one is made
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert compaction_consider(run=run, **measured_with) is not None
    assert len(callbacks) == 1


def test_a_disabled_policy_or_window_zero_never_compacts(user, make_agent, django_capture_on_commit_callbacks):
    session = SessionFactory(owner=user)
    off = make_agent(context_window=200, reserved_output_tokens=50, compaction={"enabled": False})
    zero = make_agent(context_window=200, reserved_output_tokens=50, memory_window_size=0)
    for agent in (off, zero):
        runs = add_chain(session, None, 10, agent=agent, words=10)
        with django_capture_on_commit_callbacks(execute=False):
            assert compaction_consider(run=runs[-1], counter=estimate_counter()) is None


def test_a_failed_summariser_marks_the_compaction_failed(user, make_agent, django_capture_on_commit_callbacks):
    """A non-transient endpoint error is recorded on the compaction and its step; runs fall back."""
    agent = _long_agent(make_agent)
    agent.compaction["strategies"][0]["prompt"] = "[[status:400]] Summarise."
    agent.save()
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 12, agent=agent, words=10)
    with django_capture_on_commit_callbacks(execute=False):
        pending = compaction_consider(run=runs[-1], counter=estimate_counter())
    failed = compaction_execute(compaction_id=pending.pk)
    assert failed.status == CompactionStatus.FAILED and "HTTP 400" in failed.error
    assert Step.objects.get(kind=StepKind.COMPACTION).error["type"] == "http_error"
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert not built.pending and built.messages[1]["content"].startswith("turn")


@pytest.mark.parametrize("policy", [
    {"strategies": [{"type": "shrink"}]},
    {"threshold": 1.5},
    {"threshold": 0.5, "target": 0.9},
    {"strategies": [{"type": "keep_last_turns", "turns": -1}]},
    {"strategies": [{"type": "tool_results", "action": "burn"}]},
    {"strategies": [{"type": "summarize", "max_tokens": 2}]},
    {"colour": "blue"},
])
def test_invalid_policies_are_rejected_with_a_message(policy):
    with pytest.raises(ValidationError):
        parse_policy(policy)


def test_the_default_policy(settings):
    settings.ARBOR_COMPACTION_THRESHOLD = 0.8
    policy = parse_policy({})
    assert policy.threshold == 0.8 and policy.enabled
    assert [s["type"] for s in policy.strategies] == ["tool_results", "summarize"]
