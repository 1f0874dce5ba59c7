"""Importing each source format: branches, tool traffic, system prompts, times, models, the active
run, and the report of what was skipped and why."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime

import pytest

from archive.models import ImportedConversation
from conversations.models import Message, Run, Session

pytestmark = pytest.mark.django_db


def _runs(session) -> list[Run]:
    return list(Run.objects.filter(session=session).order_by("depth", "created_at", "id"))


def _texts(run) -> list[tuple[str, str]]:
    return list(run.messages.order_by("position").values_list("role", "content"))


def _session(user, title) -> Session:
    return Session.objects.get(owner=user, title=title)


# --- ChatGPT ----------------------------------------------------------------------------------------

def test_chatgpt_keeps_every_branch_tool_traffic_and_the_current_node(user, data_dir, import_file):
    """Regenerated answers become sibling runs with the same input, edited prompts sibling runs under
    the same parent; custom instructions become the system prompt; a tool call and its result stay
    inside the run before the answer; current_node is the active run; models and times are kept."""
    report = import_file(data_dir / "chatgpt_conversations.json")
    assert report.format == "chatgpt"
    session = _session(user, "Branches and tools")
    runs = _runs(session)
    assert len(runs) == 4
    roots = [r for r in runs if r.parent_run_id is None]
    assert [_texts(r) for r in roots] == [
        [("user", "How do I grow tomatoes?"), ("assistant", "Plant them in sun.")],
        [("user", "How do I grow tomatoes?"), ("assistant", "Full sun, rich soil, water often.")],
    ]
    assert [r.model for r in roots] == ["gpt-4", "gpt-4o"]
    assert [r.finish_reason for r in roots] == ["stop", "length"]
    assert all(r.params["system"] == "I am a gardener.\n\nAnswer briefly." for r in roots)
    regenerated = roots[1]
    children = list(Run.objects.filter(parent_run=regenerated).order_by("created_at"))
    assert len(children) == 2 and all(c.depth == 1 for c in children)
    tool_run, edited_run = children
    messages = list(tool_run.messages.order_by("position"))
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant", "assistant"]
    assert messages[0].content == "[image: file-service://file-abc]\n\nHow many plants fit in this bed?"
    assert messages[0].metadata["attachments"][0]["asset_pointer"] == "file-service://file-abc"
    call = messages[1]
    assert call.content == "" and call.tool_calls[0]["function"] == {"name": "python", "arguments": "print(4 * 3)"}
    assert messages[2].content == "12" and messages[2].name == "python"
    assert messages[2].tool_call_id == call.tool_calls[0]["id"]
    assert messages[3].content == "thinking in 3D" and messages[3].metadata["raw_content"]["payload"] == {"x": 1}
    assert messages[4].content == "About 12 plants."
    assert _texts(edited_run) == [("user", "And peppers?")]  # its answer had only empty parts
    session.refresh_from_db()
    assert session.active_run_id == tool_run.pk
    assert session.created_at == datetime.fromtimestamp(1700000000, tz=UTC)
    assert tool_run.created_at == datetime.fromtimestamp(1700000100, tz=UTC)
    assert tool_run.finished_at == datetime.fromtimestamp(1700000120, tz=UTC)
    assert all(r.status == "succeeded" for r in runs)
    assert Message.objects.get(run=tool_run, position=4).created_at == datetime.fromtimestamp(1700000120, tz=UTC)


def test_chatgpt_report_skips_cycles_and_records_without_mapping_and_repairs_orphans(user, data_dir, import_file):
    """A cycle and a record without a mapping are skipped with their reasons; a message whose parent
    is missing becomes a root with a warning; the others import."""
    report = import_file(data_dir / "chatgpt_conversations.json")
    assert (report.imported, report.skipped) == (2, 2)
    reasons = {s["source_id"]: s["reason"] for s in report.skipped_items}
    assert "cycle" in reasons["conv-cycle"]
    assert "no mapping" in reasons["conv-nomap"]
    orphan = next(i for i in report.imported_items if i["source_id"] == "conv-orphans")
    assert any("parent that is not in the conversation" in w for w in orphan["warnings"])
    session = _session(user, "Orphans")
    (run,) = _runs(session)
    assert _texts(run) == [("user", "Where is my parent?"), ("assistant", "Lost.")]
    assert run.model == "gpt-3.5-turbo"
    branches = next(i for i in report.imported_items if i["source_id"] == "conv-branches")
    assert any("unknown content type" in w for w in branches["warnings"])
    assert any(w == "2 empty message(s) dropped" for w in branches["warnings"])
    assert not Session.objects.filter(owner=user, title="A cycle").exists()
    assert set(ImportedConversation.objects.values_list("source_id", flat=True)) == {"conv-branches", "conv-orphans"}


def test_chatgpt_zip_export_reads_conversations_json_inside(user, data_dir, import_file, tmp_path):
    """The whole ChatGPT export ZIP imports like its conversations.json."""
    archive = tmp_path / "chatgpt-export.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(data_dir / "chatgpt_conversations.json", "conversations.json")
        z.writestr("chat.html", "<html></html>")
        z.writestr("user.json", json.dumps({"id": "user-1"}))
    report = import_file(archive)
    assert (report.format, report.imported, report.skipped) == ("chatgpt", 2, 2)
    assert len(_runs(_session(user, "Branches and tools"))) == 4


def test_importing_the_same_file_again_skips_what_is_already_there(user, data_dir, import_file):
    """A second import of the same export skips the conversations already imported (by source id);
    ``again=True`` imports them once more."""
    import_file(data_dir / "chatgpt_conversations.json")
    second = import_file(data_dir / "chatgpt_conversations.json")
    assert second.imported == 0
    assert sum("already imported" in s["reason"] for s in second.skipped_items) == 2
    assert Session.objects.filter(owner=user).count() == 2
    third = import_file(data_dir / "chatgpt_conversations.json", again=True)
    assert third.imported == 2 and Session.objects.filter(owner=user).count() == 4


# --- Open WebUI -------------------------------------------------------------------------------------

def test_openwebui_list_with_multi_model_branches_usage_and_system(user, data_dir, import_file):
    """Answers of several models to one prompt are sibling runs; usage (OpenAI-style and Ollama's
    counters) and models are kept; the chat's system prompt is the runs' system; currentId is active."""
    report = import_file(data_dir / "openwebui_chats.json")
    assert (report.format, report.imported, report.skipped) == ("openwebui", 1, 1)
    assert "no history" in report.skipped_items[0]["reason"]
    session = _session(user, "Compare models")
    runs = _runs(session)
    roots = sorted((r for r in runs if r.parent_run_id is None), key=lambda r: r.model)
    assert [(r.model, r.prompt_tokens, r.completion_tokens) for r in roots] == [
        ("llama3:8b", 12, 2), ("mistral:7b", 13, 3),
    ]
    assert [_texts(r) for r in roots] == [
        [("user", "Name a colour."), ("assistant", "Blue.")], [("user", "Name a colour."), ("assistant", "Green.")],
    ]
    assert all(r.params == {"system": "You are terse."} for r in roots)
    (child,) = [r for r in runs if r.parent_run_id is not None]
    assert child.parent_run_id == roots[0].pk and _texts(child) == [("user", "Another?"), ("assistant", "Red.")]
    session.refresh_from_db()
    assert session.active_run_id == child.pk
    assert session.created_at == datetime.fromtimestamp(1710000000, tz=UTC)


def test_openwebui_single_chat_object(user, data_dir, import_file):
    """A single exported chat (an object, not a list) imports; "New Chat" gives way to the first prompt."""
    report = import_file(data_dir / "openwebui_single.json")
    assert (report.format, report.imported) == ("openwebui", 1)
    (run,) = _runs(_session(user, "Hello there"))
    assert run.model == "qwen2:1.5b" and _texts(run) == [("user", "Hello there"), ("assistant", "General Kenobi.")]


# --- ShareGPT ---------------------------------------------------------------------------------------

def test_sharegpt_roles_found_in_the_wild(user, data_dir, import_file):
    """human/user start runs, gpt/assistant/chatgpt/bing/bard answer; consecutive user messages stay in
    one run; a conversation opening with the model gets a placeholder input; a system turn is the
    system prompt; an unknown speaker skips the conversation; an empty one is an empty session."""
    report = import_file(data_dir / "sharegpt.json")
    assert (report.format, report.imported, report.skipped) == ("sharegpt", 4, 1)
    assert report.skipped_items[0]["source_id"] == "sg-4" and "narrator" in report.skipped_items[0]["reason"]

    first = _runs(_session(user, "Hi"))
    assert [_texts(r) for r in first] == [
        [("user", "Hi"), ("assistant", "Hello!")],
        [("user", "Part one"), ("user", "part two"), ("assistant", "Both parts read.")],
    ]
    assert first[0].params == {"system": "Be kind."} and first[1].parent_run_id == first[0].pk

    opening = _runs(Session.objects.get(owner=user, import_source__source_id="sg-2"))
    placeholder = opening[0].messages.get(position=0)
    assert placeholder.content == "" and placeholder.metadata == {"placeholder": True}
    assert _texts(opening[1]) == [("user", "Thanks"), ("assistant", "You're welcome."), ("assistant", "Anything else?")]
    assert opening[1].model == "bard"
    assert _runs(_session(user, "Which model?"))[0].model == "chatgpt"

    empty = Session.objects.get(owner=user, import_source__source_id="sg-5")
    assert not Run.objects.filter(session=empty).exists() and empty.active_run_id is None


def test_explicit_format_that_does_not_match_skips_each_record(user, data_dir, import_file):
    """Forcing a format on a file of another format skips every record with a reason; nothing is written."""
    report = import_file(data_dir / "sharegpt.json", format="chatgpt")
    assert report.imported == 0 and report.skipped == 5
    assert all("no mapping" in s["reason"] for s in report.skipped_items)
    assert not Session.objects.filter(owner=user).exists()
