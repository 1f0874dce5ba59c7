"""The memory store contract: every test here runs unchanged against all four backends
(in-memory, JSONL, database, Redis) through the ``store_spec`` fixture."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from memory.stores import AsyncMemoryStore, MemoryMessage
from tests.memory.stores.conftest import run_children

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def contents(messages) -> list[str]:
    return [m.content for m in messages]


def fill(store, n: int, role: str = "user") -> None:
    for i in range(n):
        store.add_message({"role": role, "content": f"m{i}", "created_at": T0 + timedelta(minutes=i)})


def tool_turn(store, call_id: str, result: str) -> None:
    store.add_message({"role": "assistant", "content": "", "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]})
    store.add_message({"role": "tool", "content": result, "tool_call_id": call_id})


def test_messages_round_trip_with_every_field(store):
    """What goes in comes out: role, content, name, tool_calls, tool_call_id, metadata, created_at."""
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    store.add_message(MemoryMessage(role="system", content="be brief", created_at=T0))
    store.add_message({"role": "user", "content": "weather in Oslo?", "name": "ada",
                       "metadata": {"topic": "weather", "n": 1}, "created_at": T0 + timedelta(seconds=1)})
    store.add_message({"role": "assistant", "content": "", "tool_calls": [call],
                       "created_at": T0 + timedelta(seconds=2)})
    returned = store.add_message({"role": "tool", "content": "3 °C, snow", "tool_call_id": "call_1",
                                  "created_at": T0 + timedelta(seconds=3)})
    assert returned.id is not None and returned.content == "3 °C, snow"
    history = store.get_history()
    assert [m.role for m in history] == ["system", "user", "assistant", "tool"]
    assert history[1].name == "ada" and history[1].metadata == {"topic": "weather", "n": 1}
    assert history[2].tool_calls == [call]
    assert history[3].tool_call_id == "call_1" and history[3].content == "3 °C, snow"
    assert [m.created_at for m in history] == [T0 + timedelta(seconds=s) for s in range(4)]
    assert len({m.id for m in history}) == 4
    assert history[1].as_openai() == {"role": "user", "content": "weather in Oslo?", "name": "ada"}
    assert len(store) == 4


def test_limit_takes_the_newest_in_chronological_order(store):
    """get_history(limit=N) returns the newest N, oldest first (not the oldest N)."""
    fill(store, 10)
    assert contents(store.get_history(limit=3)) == ["m7", "m8", "m9"]
    assert contents(store.get_history(limit=3, offset=3)) == ["m4", "m5", "m6"]
    assert contents(store.get_history(limit=5, offset=8)) == ["m0", "m1"]
    assert contents(store.get_history(offset=7)) == ["m0", "m1", "m2"]
    assert store.get_history(limit=0) == []
    assert store.get_history(limit=3, offset=10) == []
    assert contents(store.get_history(limit=100)) == [f"m{i}" for i in range(10)]


def test_roles_filter_applies_before_the_limit(store):
    """roles= keeps only those roles; limit then counts the newest of them."""
    for i in range(4):
        store.add_message({"role": "user", "content": f"q{i}"})
        store.add_message({"role": "assistant", "content": f"a{i}"})
    assert contents(store.get_history(roles=["assistant"], limit=2)) == ["a2", "a3"]
    assert contents(store.get_history(roles=["user"])) == ["q0", "q1", "q2", "q3"]
    assert contents(store.get_history(roles="user", limit=1, offset=1)) == ["q2"]


def test_bad_input_is_refused_and_changes_nothing(store):
    """A malformed message or page raises ValueError and writes nothing."""
    store.add_message({"role": "user", "content": "kept"})
    for bad in ({"role": "wizard", "content": "x"}, {"role": "user", "content": 42}, {"role": "user", "metadata": [1]}):
        with pytest.raises(ValueError):
            store.add_message(bad)
    with pytest.raises(ValueError):
        store.get_history(limit=-1)
    with pytest.raises(ValueError):
        store.get_history(offset=-2)
    with pytest.raises(ValueError):
        store.get_history(roles=["nobody"])
    with pytest.raises(ValueError):
        store.get_context_window(-5)
    assert contents(store.get_history()) == ["kept"]


def test_clear_forgets_everything_and_the_store_stays_usable(store_spec):
    """clear() empties the store for every object open on it; new messages start afresh."""
    first, second = store_spec.open(), store_spec.open()
    fill(first, 3)
    assert len(second.get_history()) == 3
    second.clear()
    assert first.get_history() == [] and len(first) == 0
    first.add_message({"role": "user", "content": "after"})
    assert contents(second.get_history()) == ["after"]


def test_context_window_takes_the_newest_messages_that_fit(store):
    """get_context_window(max_tokens) returns a suffix of the history within the budget."""
    for i in range(6):
        store.add_message({"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i} " + "x" * 36})
    costs = [store.count_tokens(m) for m in store.get_history()]
    assert all(c > 0 for c in costs)
    # Roles cost different template overheads, so the budget is the sum of the newest three.
    window = store.get_context_window(sum(costs[-3:]) + 1)
    assert contents(window) == contents(store.get_history(limit=3))
    assert store.get_context_window(costs[-1] - 1) == []
    assert contents(store.get_context_window(10_000)) == contents(store.get_history())


def test_context_window_never_splits_a_tool_call_from_its_results(store):
    """The assistant message carrying tool_calls and the tool results answering it come together or not at all."""
    store.add_message({"role": "user", "content": "look it up"})
    tool_turn(store, "call_9", "result " + "r" * 200)
    store.add_message({"role": "assistant", "content": "done"})
    history = store.get_history()
    cost = [store.count_tokens(m) for m in history]
    # room for the last answer and the tool result, but not for the call that produced it
    window = store.get_context_window(cost[3] + cost[2])
    assert contents(window) == ["done"]
    window = store.get_context_window(cost[3] + cost[2] + cost[1])
    assert [m.role for m in window] == ["assistant", "tool", "assistant"]
    assert window[0].tool_calls and window[1].tool_call_id == "call_9"


def test_search_ranks_the_matching_message_first(store):
    """search(query, top_k) returns the relevant messages first and at most top_k of them."""
    store.add_message({"role": "user", "content": "How do I bake sourdough bread at home?"})
    store.add_message({"role": "assistant", "content": "Feed the starter, then bake at 250 degrees."})
    store.add_message({"role": "user", "content": "What is the capital of Mongolia?"})
    store.add_message({"role": "assistant", "content": "Ulaanbaatar is the capital of Mongolia."})
    found = store.search("Mongolia capital", top_k=1)
    assert len(found) == 1 and "Mongolia" in found[0].content
    assert {m.content for m in store.search("sourdough bread", top_k=5)} >= {"How do I bake sourdough bread at home?"}
    assert store.search("zeppelin", top_k=3) == []
    assert store.search("bread", top_k=0) == []


def test_semantic_search_with_an_embedder(store_spec, hashed_embedder):
    """With an embedder the store ranks by cosine similarity of embeddings (here the endpoint's)."""
    store = store_spec.open(embedder=hashed_embedder) if store_spec.backend != "memory" else store_spec.shared
    store.embedder = hashed_embedder
    store.add_message({"role": "user", "content": "the cat sat on the warm mat"})
    store.add_message({"role": "user", "content": "quarterly revenue grew eight percent"})
    store.add_message({"role": "user", "content": "kubernetes pods keep restarting"})
    found = store.search("revenue grew", top_k=2)
    assert found[0].content == "quarterly revenue grew eight percent"
    assert len(found) == 2


def test_filter_by_metadata(store):
    """filter(metadata=...) keeps messages whose metadata has every given key with an equal value."""
    store.add_message({"role": "user", "content": "a", "metadata": {"topic": "billing", "priority": 1, "vip": True}})
    store.add_message({"role": "user", "content": "b", "metadata": {"topic": "billing", "priority": 2}})
    store.add_message({"role": "assistant", "content": "c", "metadata": {"topic": "shipping", "tags": ["x", "y"]}})
    store.add_message({"role": "user", "content": "d"})
    assert contents(store.filter(metadata={"topic": "billing"})) == ["a", "b"]
    assert contents(store.filter(metadata={"topic": "billing", "priority": 2})) == ["b"]
    assert contents(store.filter(metadata={"vip": True})) == ["a"]
    assert contents(store.filter(metadata={"tags": ["x", "y"]})) == ["c"]
    assert contents(store.filter(metadata={"topic": "billing"}, roles=["assistant"])) == []
    assert contents(store.filter(metadata={"topic": "billing"}, limit=1)) == ["b"]
    assert store.filter(metadata={"topic": "returns"}) == []


def test_filter_by_date_range(store):
    """filter(since=, until=) keeps since <= created_at < until; ISO strings work too."""
    fill(store, 6)  # m0 at T0, m1 at T0+1min, ...
    assert contents(store.filter(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))) == ["m2", "m3"]
    assert contents(store.filter(since=(T0 + timedelta(minutes=4)).isoformat())) == ["m4", "m5"]
    assert contents(store.filter(until=T0 + timedelta(minutes=1))) == ["m0"]
    assert contents(store.filter(since=T0, limit=2)) == ["m4", "m5"]


def test_async_form(store):
    """AsyncMemoryStore offers the same operations as coroutines over the same data."""
    astore = AsyncMemoryStore(store)

    async def scenario():
        await astore.add_message({"role": "user", "content": "async hello", "metadata": {"k": "v"}})
        await astore.add_messages([{"role": "assistant", "content": "async answer"}])
        history = await astore.get_history(limit=1)
        window = await astore.get_context_window(1000)
        found = await astore.search("hello", 1)
        filtered = await astore.filter(metadata={"k": "v"})
        count = await astore.count()
        await astore.clear()
        after = await astore.get_history()
        await sync_to_async(connections.close_all, thread_sensitive=True)()  # the executor thread's connection
        return history, window, found, filtered, count, after

    history, window, found, filtered, count, after = asyncio.run(scenario())
    assert contents(history) == ["async answer"]
    assert contents(window) == ["async hello", "async answer"]
    assert contents(found) == ["async hello"] and contents(filtered) == ["async hello"]
    assert count == 2 and after == []


def test_many_threads_append_without_losing_or_reordering(store_spec):
    """8 threads, each with its own store object, append 25 messages each: all 200 arrive, each
    thread's messages in its own order, every id distinct."""
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            store = store_spec.open()
            for n in range(25):
                store.add_message({"role": "user", "content": f"t{w}-{n}", "metadata": {"writer": w, "n": n}})
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    history = store_spec.open().get_history()
    assert len(history) == 200
    assert len({m.id for m in history}) == 200
    per_writer = defaultdict(list)
    for m in history:
        per_writer[m.metadata["writer"]].append(m.metadata["n"])
    assert all(ns == list(range(25)) for ns in per_writer.values()) and len(per_writer) == 8


def test_several_processes_append_to_one_store(store_spec, llm_server):
    """3 processes append 20 messages each to the same store: all 60 arrive in per-process order."""
    if not store_spec.multiprocess:
        pytest.skip("an in-memory store lives inside one process")
    run_children(store_spec, llm_server, writers=3, count=20)
    history = store_spec.open().get_history()
    assert len(history) == 60
    per_writer = defaultdict(list)
    for m in history:
        per_writer[m.metadata["writer"]].append(m.metadata["n"])
    assert sorted(per_writer) == [0, 1, 2]
    assert all(ns == list(range(20)) for ns in per_writer.values())
