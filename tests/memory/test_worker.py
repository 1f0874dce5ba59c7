"""Tools and compaction on a real Celery worker process, against the scripted model server.

The server's ``[[tool:NAME:ARGS]]`` directive makes it answer with a tool call while the last
message is not a tool result; ``[[tool_loop]]`` makes it ask every round.
"""

from __future__ import annotations

import json
import time

import pytest

from conversations import context_spec as ctx
from conversations import services
from conversations.models import Message, Run, RunStatus, Step, StepKind
from engine.context import SUMMARY_HEADER
from memory.models import Compaction, CompactionStatus
from tests.support.factories import SessionFactory
from tests.support.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def finished(run_id, timeout=30.0) -> Run:
    return wait_for(lambda: (r := Run.objects.get(pk=run_id)).is_finished and r, timeout, message=f"run {run_id}")


def chat_requests(llm_server, stream: bool | None = None) -> list[dict]:
    bodies = [r["body"] for r in llm_server.requests if "messages" in r["body"]]
    return [b for b in bodies if stream is None or bool(b.get("stream")) == stream]


def messages_of(run) -> list[Message]:
    return list(Message.objects.filter(run=run).order_by("position"))


def test_a_tool_call_round_is_stored_as_messages_and_steps(celery_worker, llm_server, user, make_agent, api):
    """The model asks for the calculator; the worker runs it, sends the result back and stores the
    exchange as messages (positions increasing) and as steps nested under the model call."""
    agent = make_agent(tools=["calculator"])
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, agent=agent,
                             input='add please [[tool:calculator:{"expression": "2 + 3 * 4"}]] [[reply:It is 14.]]')
    run = finished(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error

    user_msg, asking, result, answer = messages_of(run)
    assert [m.position for m in (user_msg, asking, result, answer)] == [0, 1, 2, 3]
    assert asking.role == "assistant" and asking.tool_calls[0]["function"] == {
        "name": "calculator", "arguments": '{"expression": "2 + 3 * 4"}'}
    assert result.role == "tool" and result.tool_call_id == asking.tool_calls[0]["id"] and result.content == "14"
    assert answer.role == "assistant" and answer.content == "It is 14."

    steps = list(Step.objects.filter(run=run).order_by("started_at", "id"))
    assert [s.kind for s in steps] == [StepKind.LLM_CALL, StepKind.TOOL_CALL, StepKind.LLM_CALL]
    assert steps[1].parent_step_id == steps[0].pk and steps[1].name == "calculator"
    assert steps[1].response["content"] == "14" and steps[1].status == "succeeded"
    assert "build" in steps[0].request and "build" not in steps[2].request  # the first build's accounting

    first, second = chat_requests(llm_server)
    assert [t["function"]["name"] for t in first["tools"]] == ["calculator"]
    assert second["messages"][-2]["tool_calls"] == asking.tool_calls
    assert second["messages"][-1] == {"role": "tool", "content": "14", "name": "calculator",
                                      "tool_call_id": asking.tool_calls[0]["id"]}
    assert run.prompt_tokens == steps[0].prompt_tokens + steps[2].prompt_tokens

    response = api.get(f"/api/runs/{run.pk}/context")
    assert response.status_code == 200
    body = response.json()
    assert body["verified"] and body["messages"] == second["messages"]

    follow = finished(services.run_start(session=session, agent=agent, input="and then?").pk)
    sent = chat_requests(llm_server)[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert follow.status == RunStatus.SUCCEEDED


def test_tool_rounds_are_bounded(celery_worker, llm_server, user, make_agent, settings):
    """A model that never stops asking for tools gets ARBOR_TOOL_MAX_ROUNDS rounds, then one call
    with tool_choice "none" that must answer."""
    agent = make_agent(tools=["calculator"])
    session = SessionFactory(owner=user)
    run = finished(services.run_start(session=session, agent=agent,
                                      input='[[tool:calculator:{"expression": "1+1"}]] [[tool_loop]] loop').pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    rounds = settings.ARBOR_TOOL_MAX_ROUNDS
    bodies = chat_requests(llm_server)
    assert len(bodies) == rounds + 1
    assert bodies[-1]["tool_choice"] == "none" and all("tool_choice" not in b for b in bodies[:-1])
    roles = [m.role for m in messages_of(run)]
    assert roles == ["user"] + ["assistant", "tool"] * rounds + ["assistant"]
    assert Step.objects.filter(run=run, kind=StepKind.TOOL_CALL).count() == rounds


def test_parallel_calls_and_tool_errors_reach_the_model(celery_worker, llm_server, user, make_agent):
    """Two calls in one round each get a result; a failing tool's error is its result, the run succeeds."""
    agent = make_agent(tools=["calculator"])
    session = SessionFactory(owner=user)
    run = finished(services.run_start(session=session, agent=agent, input=(
        '[[tool:calculator:{"expression": "10/4"}]] [[tool:calculator:{"expression": "().__class__"}]] '
        '[[tool:calculator:{"expression": "1/0"}]] [[tool:nope:{}]] go')).pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    results = [m.content for m in messages_of(run) if m.role == "tool"]
    assert results[0] == "2.5"
    assert results[1].startswith("Error: cannot evaluate")
    assert results[2] == "Error: division by zero"
    assert results[3] == "Error: no tool named 'nope' is available."
    failed = Step.objects.filter(run=run, kind=StepKind.TOOL_CALL, status="failed")
    assert failed.count() == 3 and all(s.error["type"] == "tool_error" for s in failed)


@pytest.mark.parametrize("helper_memory", ["team", "solo"])
def test_a_nested_agent_runs_as_a_child_step_with_its_own_memory_settings(
        celery_worker, llm_server, user, make_agent, helper_memory):
    """call_agent: the helper answers inside the run as an agent_call step under the tool call; it
    receives the parent's context as ITS memory settings allow (same memory id and a window of 2:
    the newest two history messages and the parent's input; another memory id: only its prompt)."""
    boss = make_agent("boss", memory_id="team", tools=["call_agent"])
    make_agent("helper", memory_id=helper_memory, memory_window_size=2, system_prompt="You are the helper.",
               model="helper-model")
    session = SessionFactory(owner=user)
    finished(services.run_start(session=session, agent=boss, input="first question").pk)
    finished(services.run_start(session=session, agent=boss, input="second question").pk)
    llm_server.reset()
    run = finished(services.run_start(session=session, agent=boss, input=(
        '[[tool:call_agent:{"agent": "helper", "prompt": "what did I ask?"}]] [[reply:Done.]] delegate')).pk)
    assert run.status == RunStatus.SUCCEEDED, run.error

    nested_request = next(b for b in chat_requests(llm_server, stream=False) if b["model"] == "helper-model")
    if helper_memory == "team":
        assert [m["content"] for m in nested_request["messages"]] == [
            "You are the helper.", "second question", "Echo: second question",
            '[[tool:call_agent:{"agent": "helper", "prompt": "what did I ask?"}]] [[reply:Done.]] delegate',
            "what did I ask?"]
    else:
        assert nested_request["messages"] == [{"role": "system", "content": "You are the helper."},
                                              {"role": "user", "content": "what did I ask?"}]
    tool_step = Step.objects.get(run=run, kind=StepKind.TOOL_CALL)
    agent_step = Step.objects.get(run=run, kind=StepKind.AGENT_CALL)
    assert agent_step.parent_step_id == tool_step.pk and agent_step.name == "helper"
    assert agent_step.status == "succeeded" and agent_step.response["text"] == "Echo: what did I ask?"
    assert agent_step.request["memory_id"] == helper_memory
    rebuilt = ctx.rebuild(run, agent_step.request["context"])
    assert rebuilt == nested_request["messages"] and ctx.digest(rebuilt) == agent_step.request["sha256"]
    tool_message = Message.objects.get(run=run, role="tool")
    assert tool_message.content == "Echo: what did I ask?"


def test_recall_searches_past_conversations(worker_factory, llm_server, user, make_agent):
    """recall (memory.semantic) finds a message from another session of the same user."""
    worker_factory(ARBOR_EMBEDDINGS="endpoint")
    agent = make_agent(tools=["recall"])
    old = SessionFactory(owner=user)
    finished(services.run_start(session=old, input="My cat is called Marmalade and she is orange.").pk, timeout=60)
    session = SessionFactory(owner=user)
    run = finished(services.run_start(session=session, agent=agent,
                                      input='[[tool:recall:{"query": "cat called orange"}]] what is my cat called?').pk,
                   timeout=60)
    assert run.status == RunStatus.SUCCEEDED, run.error
    result = Message.objects.get(run=run, role="tool").content
    assert "Marmalade" in result, result


def test_the_summary_task_runs_on_a_real_worker(celery_worker, llm_server, user, make_agent, api):
    """Turns push utilisation over the threshold; after the run that crosses it the worker's
    run_finished hook enqueues the compaction task, which summarises in the worker; the next run's
    context carries the summary, and its stored spec rebuilds and verifies."""
    agent = make_agent(context_window=700, reserved_output_tokens=100, compaction={
        "threshold": 0.6, "strategies": [{"type": "summarize", "keep_recent_turns": 2, "max_tokens": 48,
                                          "prompt": "[[reply:SUMMARY: the user's dog is Biscuit.]] Summarise."}]})
    session = SessionFactory(owner=user)
    filler = " ".join(["words"] * 25)
    crossed = None
    for i in range(12):
        run = finished(services.run_start(session=session, agent=agent, input=f"turn {i}: {filler}").pk)
        assert run.status == RunStatus.SUCCEEDED, run.error
        # run_finished is sent just after the run's final state commits: give the hook a moment.
        crossed = Compaction.objects.filter(run__session=session).first() or (
            time.sleep(0.5) or Compaction.objects.filter(run__session=session).first())
        if crossed:
            break
    assert crossed is not None, "utilisation never crossed the threshold"
    ready = wait_for(lambda: (c := Compaction.objects.get(pk=crossed.pk)).status == CompactionStatus.READY and c,
                     timeout=30, message="the compaction task")
    assert ready.summary == "SUMMARY: the user's dog is Biscuit."
    assert ready.utilisation_before > 0.6 > ready.utilisation_after
    step = Step.objects.get(run=ready.run, kind=StepKind.COMPACTION)
    assert step.status == "succeeded" and json.dumps(step.response).count("Biscuit") >= 1

    after = finished(services.run_start(session=session, agent=agent, input="next turn").pk)
    sent = chat_requests(llm_server, stream=True)[-1]["messages"]
    assert sent[1] == {"role": "system", "content": SUMMARY_HEADER + ready.summary}
    recent = after.depth - ready.from_depth  # the turns the summary does not cover (2, or 3 if a run slipped in)
    assert recent in (2, 3)
    assert len([m for m in sent if m["role"] == "user"]) == recent + 1, "recent turns verbatim, then the new input"
    body = api.get(f"/api/runs/{after.pk}/context").json()
    assert body["verified"] and body["messages"] == sent
