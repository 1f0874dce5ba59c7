"""Context building with memory: windows, memory ids across branches, tool pairs, token budgets.

Each built context is also rebuilt from its stored spec (``conversations.context_spec.rebuild``) and must
come out identical: the spec is what a model call stores instead of a copy of the messages.
"""

from __future__ import annotations

import json

import pytest

from engine.context import ContextOverflow, build_context, context_tokens
from memory.policy import budget_for, context_window_for
from tests.memory.conftest import built_for, contents, estimate_counter
from tests.support.factories import SessionFactory, add_chain, add_run, new_input

pytestmark = pytest.mark.django_db

SYSTEM = "You are a helpful assistant."


def assert_tool_pairs_intact(messages: list[dict]) -> None:
    """Every tool result follows the assistant message that called it; every call has its result."""
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "tool":
            assert message["tool_call_id"] in open_calls, f"orphaned tool result {message}"
            open_calls.discard(message["tool_call_id"])
        else:
            assert not open_calls, f"tool calls {open_calls} left without results before {message}"
            if message.get("tool_calls"):
                open_calls = {c["id"] for c in message["tool_calls"]}
    assert not open_calls


def test_unset_window_keeps_the_whole_path(user):
    """No window: system prompt, every turn of the branch in order, then the new input."""
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 3)
    built = built_for(new_input(session, runs[-1]))
    assert contents(built) == [SYSTEM, "turn 0 question", "turn 0 answer", "turn 1 question", "turn 1 answer",
                               "turn 2 question", "turn 2 answer", "new input"]


def test_window_n_keeps_the_newest_n_messages(user, make_agent):
    """memory_window_size=3 keeps the newest three history messages (not the oldest, unlike TFrameX)."""
    agent = make_agent(memory_window_size=3)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 3, agent=agent)
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert contents(built) == [SYSTEM, "turn 1 answer", "turn 2 question", "turn 2 answer", "new input"]
    assert built.window_dropped == 3
    assert len(built.spec.dropped) <= 1, "whole turns are cut by depth; only the boundary turn lists ids"


def test_window_zero_keeps_only_system_prompt_and_input(user, make_agent):
    """memory_window_size=0: the model sees the system prompt and the new input, nothing else."""
    agent = make_agent(memory_window_size=0, system_prompt="Be terse.")
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 4, agent=agent)
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert built.messages == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "new input"}]


def test_agent_system_prompt_is_used_and_always_kept(user, make_agent):
    """The agent's system prompt comes first even when the budget cuts everything else."""
    agent = make_agent(system_prompt="You are Arbor's test agent.", context_window=120, reserved_output_tokens=40)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 10, agent=agent, words=20)
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert built.messages[0] == {"role": "system", "content": "You are Arbor's test agent."}
    assert built.messages[-1] == {"role": "user", "content": "new input"}
    assert built.budget_dropped > 0


def test_same_memory_id_shares_history_different_ids_are_isolated(user, make_agent):
    """Agents with one memory id see each other's turns; another memory id sees only its own."""
    writer = make_agent("writer", memory_id="team")
    editor = make_agent("editor", memory_id="team")
    critic = make_agent("critic", memory_id="solo")
    session = SessionFactory(owner=user)
    r1 = add_run(session, None, "writer asks", "writer answers", agent=writer)
    r2 = add_run(session, r1, "critic asks", "critic answers", agent=critic)
    r3 = add_run(session, r2, "editor asks", "editor answers", agent=editor)

    for_editor = built_for(new_input(session, r3, "editor again", agent=editor))
    assert contents(for_editor) == [SYSTEM, "writer asks", "writer answers", "editor asks", "editor answers",
                                    "editor again"]
    for_critic = built_for(new_input(session, r3, "critic again", agent=critic))
    assert contents(for_critic) == [SYSTEM, "critic asks", "critic answers", "critic again"]


def test_a_run_sees_only_its_own_ancestors(user, make_agent):
    """Turns on a sibling branch with the same memory id stay invisible: branches are respected."""
    agent = make_agent(memory_id="team")
    session = SessionFactory(owner=user)
    root = add_run(session, None, "root q", "root a", agent=agent)
    add_run(session, root, "branch A q", "branch A a", agent=agent)
    b = add_run(session, root, "branch B q", "branch B a", agent=agent)
    built = built_for(new_input(session, b, agent=agent))
    assert contents(built) == [SYSTEM, "root q", "root a", "branch B q", "branch B a", "new input"]


def _tool_turn(session, parent, agent, tag: str):
    calls = [{"id": f"call_{tag}_1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}},
             {"id": f"call_{tag}_2", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}]
    return add_run(session, parent, f"{tag} q", f"{tag} answer", agent=agent, tool_traffic=[
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "tool_call_id": f"call_{tag}_1", "name": "calculator", "content": "1"},
        {"role": "tool", "tool_call_id": f"call_{tag}_2", "name": "calculator", "content": "2"},
    ])


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5, 6, 7, None])
def test_windows_never_split_a_tool_call_from_its_results(user, make_agent, window):
    """Whatever the window, an assistant message with tool_calls and its results stay together."""
    agent = make_agent(memory_window_size=window)
    session = SessionFactory(owner=user)
    first = _tool_turn(session, None, agent, "a")
    second = _tool_turn(session, first, agent, "b")
    built = built_for(new_input(session, second, agent=agent))
    assert_tool_pairs_intact(built.messages)
    history = built.messages[1:-1]
    assert len(history) <= (window if window is not None else 10)
    if window is not None and window >= 5:
        assert [m["content"] for m in history][-5:] == ["b q", "", "1", "2", "b answer"]


@pytest.mark.parametrize("usable", [60, 90, 120, 200])
def test_budget_never_splits_tool_pairs(user, make_agent, usable):
    """When the token budget cuts into a tool exchange, the exchange goes as a whole."""
    agent = make_agent(context_window=usable + 50, reserved_output_tokens=50)
    session = SessionFactory(owner=user)
    parent = None
    for tag in "abcd":
        parent = _tool_turn(session, parent, agent, tag)
    built = built_for(new_input(session, parent, agent=agent))
    assert_tool_pairs_intact(built.messages)
    assert built.tokens <= usable
    assert context_tokens(estimate_counter(), built.messages) == built.tokens


def test_an_unfinished_tool_exchange_is_left_out(user, make_agent):
    """A cancelled run's tool call without its result is never sent (APIs reject it)."""
    agent = make_agent()
    session = SessionFactory(owner=user)
    calls = [{"id": "call_x", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}]
    broken = add_run(session, None, "cancelled q", None, agent=agent, status="cancelled",
                     tool_traffic=[{"role": "assistant", "content": "", "tool_calls": calls}])
    built = built_for(new_input(session, broken, agent=agent))
    assert contents(built) == [SYSTEM, "cancelled q", "new input"]
    assert built.unpaired_dropped == 1


@pytest.mark.parametrize("window_tokens", [150, 220, 400, 900])
@pytest.mark.parametrize("words", [5, 40])
def test_the_context_never_exceeds_the_usable_window(user, make_agent, window_tokens, words):
    """Counted the same way the budget counts, the context fits context window − reserved output;
    the newest turns are the ones kept."""
    agent = make_agent(context_window=window_tokens, reserved_output_tokens=64)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 30, agent=agent, words=words)
    built = built_for(new_input(session, runs[-1], agent=agent))
    usable = window_tokens - 64
    assert built.tokens <= usable
    assert context_tokens(estimate_counter(), built.messages) <= usable
    if len(built.messages) > 2:
        assert built.messages[-2]["content"].startswith("turn 29 answer"), "the newest history is kept first"


def test_input_larger_than_the_window_is_a_clear_error(user, make_agent):
    agent = make_agent(context_window=100, reserved_output_tokens=50)
    session = SessionFactory(owner=user)
    run = new_input(session, None, "word " * 400, agent=agent)
    with pytest.raises(ContextOverflow, match="usable context window is 50 tokens"):
        build_context(run, counter=estimate_counter())


def test_context_windows_come_from_settings_with_a_default(settings, make_agent):
    """Known models use the configured window, unknown ones the default (never 'compact every turn')."""
    settings.ARBOR_MODEL_CONTEXT_WINDOWS = {"smollm2-135m-instruct": 8192, "big-model": 128_000}
    settings.ARBOR_DEFAULT_CONTEXT_WINDOW = 8192
    assert context_window_for("smollm2-135m-instruct") == 8192
    assert context_window_for("big-model") == 128_000
    assert context_window_for("never-heard-of-it") == 8192
    assert context_window_for("big-model", make_agent(context_window=2048)) == 2048
    budget = budget_for(model="never-heard-of-it", agent=make_agent(reserved_output_tokens=1000))
    assert (budget.context_window, budget.usable) == (8192, 7192)


def test_a_turn_is_budgeted_for_the_model_it_calls_not_its_agents(settings, user, make_agent):
    """A model picked for one run (the composer's picker, a fan-out column) under an agent of
    another model: the turn's budget is the picked model's window on the run's connection; the
    agent's own window, when it sets one, still wins."""
    from conversations import services
    from engine.turn import Turn
    from streams.backends import get_stream

    settings.ARBOR_MODEL_CONTEXT_WINDOWS = {"small-model": 2048, "big-model": 128_000}
    session = SessionFactory(owner=user)
    for agent, window in ((make_agent(model="big-model"), 2048), (make_agent(model="big-model", context_window=4096),
                                                                   4096)):
        run = services.run_start(session=session, input="hi", agent=agent, model="small-model", parent=None)
        run.refresh_from_db()
        assert (run.model, run.agent_id) == ("small-model", agent.pk)
        assert Turn.start(run, get_stream()).budget.context_window == window


def test_the_spec_is_small_whatever_the_depth(user, make_agent):
    """A deep branch with a window stores a spec of a few fields, not the history."""
    agent = make_agent(memory_window_size=4)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 200, agent=agent)
    built = built_for(new_input(session, runs[-1], agent=agent))
    assert len(json.dumps(built.spec.to_json())) < 400
    assert contents(built)[1:-1] == ["turn 198 question", "turn 198 answer", "turn 199 question", "turn 199 answer"]
