"""Exports (Arbor JSON, JSON Lines, ChatGPT JSON, Markdown) and round trips: export → import gives
the same tree (structure and contents; ids are new)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from archive import exporters
from conversations.models import Message, Role, Run, RunStatus, Session
from tests.archive.conftest import tree_signature
from tests.support.factories import RunFactory, SessionFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def rich_session(user) -> Session:
    """A tree with regenerated and edited siblings, a run with tool traffic, a system prompt,
    usage, a failed run, unicode and markdown, at several depths."""
    session = SessionFactory(owner=user, title="Round trip ✓")
    root = RunFactory(session=session, turn=("Plan a trip to Kyoto", "Day 1: temples."), model="gpt-4o",
                      params={"system": "You are a travel agent.", "temperature": 0.3}, prompt_tokens=20,
                      completion_tokens=5, finish_reason="stop", created_at=T0, started_at=T0,
                      finished_at=T0 + timedelta(seconds=3))
    RunFactory(session=session, turn=("Plan a trip to Kyoto", "Day 1: **markets**."), model="gpt-4o-mini",
               created_at=T0 + timedelta(minutes=1), finish_reason="length")
    tools = RunFactory(session=session, parent_run=root, turn=("What's the weather?", None), model="gpt-4o",
                       created_at=T0 + timedelta(minutes=2), memory_id="planner")
    Message.objects.create(run=tools, position=1, role=Role.ASSISTANT, content="",
                           tool_calls=[{"id": "call_1", "type": "function",
                                        "function": {"name": "weather", "arguments": '{"city": "Kyoto"}'}}])
    Message.objects.create(run=tools, position=2, role=Role.TOOL, content='{"temp": 21}', tool_call_id="call_1",
                           name="weather")
    Message.objects.create(run=tools, position=3, role=Role.ASSISTANT, content="21 °C and sunny ☀️", token_count=7)
    edited = RunFactory(session=session, parent_run=root, turn=("What's the weather like?", "Unknown."),
                        created_at=T0 + timedelta(minutes=3))
    RunFactory(session=session, parent_run=edited, turn=("Try again", None), status=RunStatus.FAILED,
               error_type="rate_limited", error_message="429 from the endpoint", created_at=T0 + timedelta(minutes=4))
    deep = RunFactory(session=session, parent_run=tools, turn=("And tomorrow?", "Rain."),
                      created_at=T0 + timedelta(minutes=5))
    Session.objects.filter(pk=session.pk).update(active_run=deep)
    session.refresh_from_db()
    return session


def _export_to(tmp_path, session, fmt, name) -> object:
    path = tmp_path / name
    path.write_bytes(b"".join(exporters.export_session(session=session, format=fmt).chunks))
    return path


def _only_new_session(user, before: set) -> Session:
    (session,) = Session.objects.filter(owner=user).exclude(pk__in=before)
    return session


@pytest.mark.parametrize("fmt, name", [("arbor", "session.json"), ("jsonl", "session.jsonl")])
def test_arbor_json_and_jsonl_round_trip_the_whole_tree(user, rich_session, tmp_path, import_file, fmt, name):
    """Every run, message, tool call, model, params, memory_id, usage, status, error, time and the
    active run survive export → import; the ids are new."""
    path = _export_to(tmp_path, rich_session, fmt, name)
    before = set(Session.objects.values_list("pk", flat=True))
    report = import_file(path)
    assert (report.format, report.imported, report.skipped) == (fmt, 1, 0)
    copy = _only_new_session(user, before)
    assert tree_signature(copy) == tree_signature(rich_session)
    assert copy.title == rich_session.title
    original = {r.created_at: r for r in Run.objects.filter(session=rich_session)}
    copied = {r.created_at: r for r in Run.objects.filter(session=copy)}
    assert original.keys() == copied.keys()
    for when, run in original.items():
        twin = copied[when]
        assert twin.pk != run.pk
        assert (twin.memory_id, twin.error_type, twin.error_message, twin.depth, twin.finished_at) == (
            run.memory_id, run.error_type, run.error_message, run.depth, run.finished_at)
    assert copied[rich_session.active_run.created_at].pk == copy.active_run_id
    token_counts = set(Message.objects.filter(run__session=copy).values_list("token_count", flat=True))
    assert 7 in token_counts


def test_chatgpt_export_round_trips_structure_and_contents(user, rich_session, tmp_path, import_file):
    """The ChatGPT-style export keeps the tree, the messages (tool calls included), the models and
    the system prompt; what the ChatGPT format has no place for (usage, other params, status) is not
    expected back."""
    path = _export_to(tmp_path, rich_session, "chatgpt", "conversations.json")
    data = json.loads(path.read_text())
    assert data[0]["mapping"]["client-created-root"]["message"] is None
    before = set(Session.objects.values_list("pk", flat=True))
    report = import_file(path)
    assert (report.format, report.imported) == ("chatgpt", 1)
    copy = _only_new_session(user, before)

    def reduced(signature):
        return sorted((
            {"messages": [(role, content, name, bool(calls)) for role, content, name, calls, _ in n["messages"]],
             "model": n["model"], "system": n["params"].get("system"), "children": reduced(n["children"])}
            for n in signature
        ), key=repr)

    assert reduced(tree_signature(copy)) == reduced(tree_signature(rich_session))
    tool = Message.objects.get(run__session=copy, role="tool")
    call = Message.objects.get(run__session=copy, role="assistant", content="", run=tool.run)
    assert call.tool_calls[0]["function"] == {"name": "weather", "arguments": '{"city": "Kyoto"}'}
    assert tool.tool_call_id == call.tool_calls[0]["id"]
    copy.refresh_from_db()
    assert _texts_to(copy.active_run) == _texts_to(rich_session.active_run)


def _texts_to(run) -> list:
    return [(m.role, m.content) for m in Message.objects.on_path_to(run)]


def test_chatgpt_import_export_import_gives_the_same_tree(user, data_dir, tmp_path, import_file):
    """A ChatGPT conversation imported, exported as ChatGPT JSON and imported again: the same tree."""
    import_file(data_dir / "chatgpt_conversations.json")
    first = Session.objects.get(owner=user, title="Branches and tools")
    path = _export_to(tmp_path, first, "chatgpt", "again.json")
    before = set(Session.objects.values_list("pk", flat=True))
    import_file(path, again=True)
    second = _only_new_session(user, before)
    assert tree_signature(second) == tree_signature(first)


def test_export_of_a_fork_carries_the_shared_ancestors(user, rich_session, tmp_path, import_file):
    """A fork's export holds the runs it shares with its source, so the imported copy stands alone."""
    from conversations.services import session_fork

    fork = session_fork(run=rich_session.active_run, owner=user)
    RunFactory(session=fork, parent_run=rich_session.active_run, turn=("In the fork", "Yes."))
    fork.refresh_from_db()
    path = _export_to(tmp_path, fork, "arbor", "fork.json")
    before = set(Session.objects.values_list("pk", flat=True))
    import_file(path)
    copy = _only_new_session(user, before)
    texts = [m.content for m in Message.objects.filter(run__session=copy).order_by("run__depth", "position")]
    assert texts[:2] == ["Plan a trip to Kyoto", "Day 1: temples."] and texts[-2:] == ["In the fork", "Yes."]
    assert Run.objects.filter(session=copy).count() == 4 and copy.forked_from_run_id is None


def test_markdown_exports_one_branch(user, rich_session):
    """Markdown holds the system prompt and the messages of the chosen branch only, tool calls readable."""
    text = b"".join(exporters.export_session(session=rich_session, format="markdown").chunks).decode()
    assert text.startswith("# Round trip ✓\n")
    assert "## System\n\nYou are a travel agent." in text
    assert "## User\n\nPlan a trip to Kyoto" in text and "## Assistant (gpt-4o)\n\nDay 1: temples." in text
    assert "`weather` `{\"city\": \"Kyoto\"}`" in text and "## Tool weather" in text
    assert "And tomorrow?" in text
    assert "markets" not in text and "Unknown." not in text  # sibling branches are not on it
    edited = Run.objects.get(session=rich_session, messages__content="What's the weather like?")
    other = b"".join(exporters.export_session(session=rich_session, format="markdown", run=edited).chunks).decode()
    assert "Unknown." in other and "21 °C" not in other


def test_unknown_export_format_is_refused(rich_session):
    from core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="unknown export format"):
        exporters.export_session(session=rich_session, format="pdf")


def test_run_snapshots_of_export_runs_import_as_the_same_tree(user, rich_session, tmp_path, import_file):
    """A file written by ``archive.exporters.write_runs`` (``manage.py export_runs``) imports through the
    archive importer (``--format jsonl``) as the same tree, the active run included."""
    path = tmp_path / "snapshot.jsonl"
    with open(path, "w") as fp:
        exporters.write_runs(exporters.runs_for_export(Run.objects.filter(session=rich_session)), fp)
    before = set(Session.objects.values_list("pk", flat=True))
    report = import_file(path, format="jsonl")
    assert (report.imported, report.skipped) == (1, 0)
    copy = _only_new_session(user, before)
    assert tree_signature(copy) == tree_signature(rich_session)
    assert copy.title == rich_session.title
    assert _texts_to(copy.active_run) == _texts_to(rich_session.active_run)


def test_export_session_command_writes_a_file_that_imports_back(user, rich_session, tmp_path, import_file):
    """``manage.py export_session ID --format arbor -o FILE`` → ``import_conversations`` gives the same tree."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    path = tmp_path / "cli.json"
    call_command("export_session", str(rich_session.pk), "--format", "arbor", "-o", str(path))
    before = set(Session.objects.values_list("pk", flat=True))
    call_command("import_conversations", str(path), "--user", user.username)
    assert tree_signature(_only_new_session(user, before)) == tree_signature(rich_session)
    with pytest.raises(CommandError, match="no session"):
        call_command("export_session", "nope")
