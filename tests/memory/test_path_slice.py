"""A turn reads only the messages its context can send (``engine.context.read_path``): after a ready
compaction, the turns from its start on plus the pinned turns. The context built from that slice is
the one built from the whole path, message for message, spec, parts and notes alike; a context that
needs more (another memory id's compaction, none at all) reads the whole path again."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import context_spec as ctx
from engine.context import build_context, measure_next, read_path
from memory.models import Compaction, CompactionStatus, Pin
from tests.memory.conftest import estimate_counter
from tests.support.factories import SessionFactory, add_chain, add_run, new_input

pytestmark = pytest.mark.django_db


def _chat(user, make_agent, *, compacted: bool = True):
    """40 turns with a tool exchange, a turn of another memory id on each side of the compaction's
    start (depth 25), a pinned turn and a pinned answer above it, and a new input below."""
    agent = make_agent(context_window=4000, reserved_output_tokens=100)
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 12, agent=agent, words=5)
    runs.append(add_run(session, runs[-1], "notes 12", "noted 12", memory_id="notes"))
    runs += add_chain(session, runs[-1], 16, agent=agent, prefix="mid", words=5)
    runs.append(add_run(session, runs[-1], "tool please", "done", agent=agent, tool_traffic=[
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]},
        {"role": "tool", "content": "12:00", "name": "clock", "tool_call_id": "c1"},
    ]))
    runs.append(add_run(session, runs[-1], "notes 30", "noted 30", memory_id="notes"))
    runs += add_chain(session, runs[-1], 9, agent=agent, prefix="late", words=5)
    Pin.objects.create(run=runs[3])
    Pin.objects.create(run=runs[7], message=runs[7].messages.get(position=1))
    if compacted:
        replaced = runs[29].messages.get(role="tool")
        Compaction.objects.create(run=runs[33], memory_id=agent.memory_id, status=CompactionStatus.READY,
                                  from_depth=25, summary="Earlier: greetings.", dropped=[],
                                  replaced={str(replaced.pk): "[cut]"})
    return agent, session, runs, new_input(session, runs[-1], agent=agent)


def _same(sliced, whole) -> None:
    assert sliced.messages == whole.messages
    assert ctx.digest(sliced.messages) == ctx.digest(whole.messages)
    assert sliced.spec.to_json() == whole.spec.to_json()
    assert sliced.parts() == whole.parts()
    assert (sliced.tokens, sliced.history_tokens, sliced.budget_dropped, sliced.window_dropped,
            sliced.unpaired_dropped) == (whole.tokens, whole.history_tokens, whole.budget_dropped,
                                         whole.window_dropped, whole.unpaired_dropped)


def test_after_a_compaction_the_turn_reads_fewer_rows_and_builds_the_same_context(user, make_agent):
    agent, session, runs, run = _chat(user, make_agent)
    whole_path, counter = ctx.path_messages(run), estimate_counter()
    whole = build_context(run, path=whole_path, counter=counter, memory_ids=ctx.path_memory_ids(run))
    with CaptureQueriesContext(connection) as queries:
        path, memory_ids = read_path(run, agent)
    assert len(queries) == 3, [q["sql"] for q in queries]  # the path's facts, the compaction, the slice
    assert {m.run_id for m in path} == {r.pk for r in [*runs, run] if r.depth >= 25} | {runs[3].pk, runs[7].pk}
    assert len(path) < len(whole_path) / 2, (len(path), len(whole_path))
    assert sorted(d for _, d in path.earlier) == [d for d in range(25) if d not in (3, 7)]
    assert [m for m, d in path.earlier if d == 12] == ["notes"]
    with CaptureQueriesContext(connection) as queries:
        sliced = build_context(run, path=path, counter=counter, memory_ids=memory_ids)
    assert not any("conversations_message" in q["sql"] for q in queries), "the slice is enough: no path read"
    _same(sliced, whole)
    assert any("Turns 1–3, 5–12, 14–25 were summarised" in n for n in sliced.parts()["not_seen"]), sliced.notes
    assert any("another memory id (notes)" in n for n in sliced.notes)
    assert ctx.verify(run, {"context": sliced.spec.to_json(), "sha256": ctx.digest(sliced.messages)})["verified"]
    # Compaction's measuring after the turn reuses the slice, as the engine does.
    _same(measure_next(run, agent=agent, counter=counter, path=path, memory_ids=memory_ids),
          measure_next(run, agent=agent, counter=counter, path=whole_path, memory_ids=ctx.path_memory_ids(run)))


def test_a_context_the_slice_cannot_hold_reads_the_whole_path(user, make_agent):
    """A nested agent of another memory id (no compaction of its own) and a path with no ready
    compaction: the whole path, and the same context as without the slice."""
    agent, session, runs, run = _chat(user, make_agent)
    path, memory_ids = read_path(run, agent)
    counter = estimate_counter()
    nested = make_agent(memory_id="notes")
    whole = build_context(run, agent=nested, memory_id="notes", path=ctx.path_messages(run), counter=counter)
    with CaptureQueriesContext(connection) as queries:
        sliced = build_context(run, agent=nested, memory_id="notes", path=path, counter=counter)
    assert sum("conversations_message" in q["sql"] for q in queries) == 1, "the whole path, read once more"
    _same(sliced, whole)

    agent, session, runs, run = _chat(user, make_agent, compacted=False)
    path, memory_ids = read_path(run, agent)
    assert path.start == 0 and len(path) == len(ctx.path_messages(run))
    _same(build_context(run, path=path, counter=counter, memory_ids=memory_ids),
          build_context(run, counter=counter))


def test_path_facts_sends_the_memory_id_changes_and_expands_them_to_every_depth(user, make_agent):
    """The path's memory ids arrive as the depths where they change (one row for a run of one agent),
    and expand to the memory id of every run, root to leaf, whichever run the change is on."""
    agent, session, runs, run = _chat(user, make_agent)
    leaf = add_run(session, run, "aside", "noted", memory_id="notes")  # a change on the leaf itself
    for target in (run, leaf, runs[12], runs[0]):
        expected = ctx.path_memory_ids(target)
        by_depth = {r.depth: expected[r.pk] for r in [*runs, run, leaf] if r.pk in expected}
        facts = ctx.path_facts(target, agent.memory_id)
        assert facts.memory_ids == [by_depth[d] for d in range(target.depth + 1)]
    with CaptureQueriesContext(connection) as queries:
        ctx.path_facts(leaf, agent.memory_id)
    assert len(queries) == 1
    with connection.cursor() as cursor:
        cursor.execute(queries[0]["sql"])
        kinds = [row[0] for row in cursor.fetchall()]
    # root (default), notes at 12, default at 13, notes at 30, default at 31, notes on the leaf (41)
    assert kinds.count(0) == 6, kinds
