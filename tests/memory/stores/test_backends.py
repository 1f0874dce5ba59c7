"""What each backend adds to the contract: caps and eviction, TTLs, the file format, and the
database store living in the dashboard's own tree."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.models import Message, Run, RunStatus, Session
from memory.stores import (
    InMemoryMemoryStore,
    JSONLMemoryStore,
    MemoryFull,
    RedisMemoryStore,
)
from search.memory_store import DatabaseMemoryStore
from tests.memory.stores.conftest import REDIS_URL, redis_available
from tests.support.factories import RunFactory, SessionFactory


def contents(messages):
    return [m.content for m in messages]


def tool_turn(store, call_id):
    store.add_message({"role": "assistant", "content": "", "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
    store.add_message({"role": "tool", "content": f"result {call_id}", "tool_call_id": call_id})


# --- in memory ------------------------------------------------------------------------------------

def test_in_memory_max_messages_evicts_the_oldest_first():
    """max_messages=3 with fifo eviction keeps the newest three."""
    store = InMemoryMemoryStore(max_messages=3)
    for i in range(5):
        store.add_message({"role": "user", "content": f"m{i}"})
    assert contents(store.get_history()) == ["m2", "m3", "m4"]


def test_in_memory_eviction_takes_a_tool_call_and_its_results_together():
    """Evicting an assistant tool call also evicts its results: no orphan tool message is left."""
    store = InMemoryMemoryStore(max_messages=3)
    tool_turn(store, "c1")
    store.add_message({"role": "user", "content": "next"})
    store.add_message({"role": "assistant", "content": "answer"})
    assert [m.role for m in store.get_history()] == ["user", "assistant"]


def test_in_memory_max_tokens_and_error_eviction():
    """max_tokens caps the total; eviction="error" refuses instead of evicting, and nothing changes."""
    count = lambda m: len(m.content)  # noqa: E731 - one token per character keeps the arithmetic plain
    store = InMemoryMemoryStore(max_tokens=10, token_count=count)
    for text in ("aaaa", "bbbb", "cccc"):
        store.add_message({"role": "user", "content": text})
    assert contents(store.get_history()) == ["bbbb", "cccc"]
    with pytest.raises(MemoryFull):
        store.add_message({"role": "user", "content": "x" * 11})
    strict = InMemoryMemoryStore(max_messages=2, eviction="error")
    strict.add_messages([{"role": "user", "content": "1"}, {"role": "user", "content": "2"}])
    with pytest.raises(MemoryFull):
        strict.add_message({"role": "user", "content": "3"})
    assert contents(strict.get_history()) == ["1", "2"]
    with pytest.raises(ValueError):
        InMemoryMemoryStore(eviction="lru")


# --- JSONL ----------------------------------------------------------------------------------------

def test_jsonl_appends_one_line_per_message_and_never_rewrites(tmp_path):
    """Each add appends one line; the bytes already written stay as they were."""
    path = tmp_path / "m.jsonl"
    store = JSONLMemoryStore(path)
    store.add_message({"role": "user", "content": "first"})
    before = path.read_bytes()
    store.add_message({"role": "assistant", "content": "second"})
    after = path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    lines = [json.loads(line) for line in after.splitlines()]
    assert "generation" in lines[0]
    assert [(d["id"], d["role"], d["content"]) for d in lines[1:]] == [(1, "user", "first"), (2, "assistant", "second")]


def test_jsonl_reads_only_what_was_appended_and_skips_a_torn_line(tmp_path):
    """A reader sees other writers' appends; a line cut short by a crash is skipped, not glued."""
    path = tmp_path / "m.jsonl"
    writer, reader = JSONLMemoryStore(path), JSONLMemoryStore(path)
    writer.add_message({"role": "user", "content": "one"})
    assert contents(reader.get_history()) == ["one"]
    with open(path, "ab") as fh:
        fh.write(b'{"role": "user", "content": "tor')  # a crash mid-line
    writer2 = JSONLMemoryStore(path)
    writer2.add_message({"role": "user", "content": "two"})
    assert contents(reader.get_history()) == ["one", "two"]
    assert contents(JSONLMemoryStore(path).get_history()) == ["one", "two"]


# --- Redis ----------------------------------------------------------------------------------------

needs_redis = pytest.mark.skipif(not redis_available(), reason=f"Redis is not reachable at {REDIS_URL}")


@needs_redis
def test_redis_ttl_and_max_messages():
    """ttl expires the memory after the last write; max_messages keeps the newest N (no orphan results)."""
    memory_id = f"ttl-{uuid.uuid4().hex[:8]}"
    store = RedisMemoryStore(REDIS_URL, ttl=1, max_messages=3, memory_id=memory_id)
    tool_turn(store, "c1")
    store.add_message({"role": "user", "content": "u"})
    store.add_message({"role": "assistant", "content": "a"})
    assert [m.role for m in store.get_history()] == ["user", "assistant"]
    client = redis.Redis.from_url(REDIS_URL)
    assert 0 < client.ttl(store.key) <= 1
    time.sleep(1.3)
    assert store.get_history() == [] and client.exists(store.key) == 0
    client.delete(store.key, store.seq_key)


@needs_redis
def test_redis_history_page_reads_only_that_page():
    """get_history(limit=2) asks Redis for two items (LRANGE with negative indexes), not the whole list."""
    store = RedisMemoryStore(REDIS_URL, memory_id=f"page-{uuid.uuid4().hex[:8]}")
    for i in range(50):
        store.add_message({"role": "user", "content": f"m{i}"})
    calls = []
    original = store.client.lrange
    store.client.lrange = lambda key, start, end: calls.append((start, end)) or original(key, start, end)
    assert contents(store.get_history(limit=2, offset=1)) == ["m47", "m48"]
    assert calls == [(-3, -2)]
    store.clear()


# --- database -------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_database_store_writes_the_dashboard_tree(user):
    """Each user message starts a finished run (a child of the last); other messages join that run;
    the store's session is an ordinary session of the user's, with the last run active."""
    store = DatabaseMemoryStore("notes", user=user)
    store.add_messages([
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"},
    ])
    session = Session.objects.get(owner=user, title="Memory store: notes")
    runs = list(Run.objects.filter(session=session).order_by("depth"))
    assert [(r.depth, r.status, r.memory_id) for r in runs] == [
        (0, RunStatus.SUCCEEDED, "notes"), (1, RunStatus.SUCCEEDED, "notes"),
    ]
    assert runs[1].parent_run_id == runs[0].pk and session.active_run_id == runs[1].pk
    messages = Message.objects.filter(run=runs[1]).order_by("position")
    assert [(m.position, m.content) for m in messages] == [(0, "q2"), (1, "a2")]
    assert DatabaseMemoryStore("notes", user=user).session_id == session.pk  # one session per (user, memory id)


@pytest.mark.django_db
def test_database_store_reads_a_branch_through_its_memory_id(user):
    """On a dashboard branch, a store sees only messages of runs with its memory_id, on that branch."""
    session = SessionFactory(owner=user)
    root = RunFactory(session=session, turn=("hello", "hi"))
    other = RunFactory(session=session, parent_run=root, memory_id="planner", turn=("plan it", "plan"))
    sibling = RunFactory(session=session, parent_run=root, turn=("a sibling", "elsewhere"))
    leaf = RunFactory(session=session, parent_run=other, turn=("go on", "going"))
    store = DatabaseMemoryStore("default", run=leaf)
    assert contents(store.get_history()) == ["hello", "hi", "go on", "going"]
    assert contents(DatabaseMemoryStore("planner", run=leaf).get_history()) == ["plan it", "plan"]
    assert contents(DatabaseMemoryStore("default", run=sibling).get_history()) == [
        "hello", "hi", "a sibling", "elsewhere",
    ]
    store.add_message({"role": "user", "content": "continue the branch"})
    new_run = Run.objects.get(pk=store.head_id)
    assert new_run.parent_run_id == leaf.pk and new_run.session_id == session.pk
    assert contents(store.get_history(limit=2)) == ["going", "continue the branch"]
    assert leaf.messages.count() == 2  # the dashboard's finished run was not touched


@pytest.mark.django_db
def test_database_store_on_a_session_follows_its_active_branch(user):
    """session= reads and extends the session's active branch, as the dashboard shows it."""
    session = SessionFactory(owner=user)
    root = RunFactory(session=session, turn=("first", "reply"))
    Session.objects.filter(pk=session.pk).update(active_run=root)
    store = DatabaseMemoryStore(session=session, user=user)
    store.add_message({"role": "user", "content": "from a script"})
    session.refresh_from_db()
    assert session.active_run.parent_run_id == root.pk
    assert contents(store.get_history()) == ["first", "reply", "from a script"]


@pytest.mark.django_db
def test_database_store_refuses_other_users_runs(user, other_user):
    """A user cannot open a store on another user's session or run."""
    run = RunFactory(session=SessionFactory(owner=other_user))
    with pytest.raises(Run.DoesNotExist):
        DatabaseMemoryStore(run=run, user=user)
    with pytest.raises(Session.DoesNotExist):
        DatabaseMemoryStore(session=run.session, user=user)
    with pytest.raises(ValueError):
        DatabaseMemoryStore("x")


@pytest.mark.django_db
def test_database_store_clear_keeps_the_tree(user):
    """clear() starts a new root for the next message; the old runs stay in the tree."""
    store = DatabaseMemoryStore("c", user=user)
    store.add_message({"role": "user", "content": "old"})
    store.clear()
    store.add_message({"role": "user", "content": "new"})
    assert contents(store.get_history()) == ["new"]
    assert Run.objects.filter(session_id=store.session_id, parent_run__isnull=True).count() == 2


@pytest.mark.django_db
def test_database_history_is_a_constant_number_of_queries(user):
    """get_history(limit=...) costs the same few queries at depth 10 and at depth 200."""
    from tests.support.factories import build_chain

    counts = []
    for depth in (10, 200):
        session = SessionFactory(owner=user)
        runs = build_chain(session, depth)
        store = DatabaseMemoryStore("default", run=runs[-1])
        with CaptureQueriesContext(connection) as ctx:
            history = store.get_history(limit=5)
        assert contents(history)[-1] == f"answer {depth - 1}"
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] <= 2
