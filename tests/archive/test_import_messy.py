"""Messy files: truncated JSON, broken UTF-8, NUL bytes and lone surrogates, not-JSON, empty files,
broken JSON lines, and a conversation the database refuses: nothing crashes, nothing half-imports,
the report says what happened."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from archive import writer
from archive.models import ImportedConversation, ImportJob
from conversations.models import Message, Run, Session

pytestmark = pytest.mark.django_db


def _sharegpt(n: int) -> list[dict]:
    return [{"id": f"c{i}", "conversations": [{"from": "human", "value": f"question {i}"},
                                               {"from": "gpt", "value": f"answer {i}"}]} for i in range(n)]


def test_truncated_json_imports_every_complete_record_and_reports_the_cut(user, tmp_path, import_file):
    """A file cut off in the middle of its 5th record: the 4 complete ones import, the report says
    where the file ended; no row of the cut record exists."""
    text = json.dumps(_sharegpt(5), indent=1)
    cut = text.index("answer 4") + 3
    path = tmp_path / "cut.json"
    path.write_text(text[:cut])
    report = import_file(path)
    assert report.imported == 4 and report.skipped == 0
    (problem,) = report.problems
    assert "ends early (truncated JSON) after 4 complete record(s)" in problem["message"]
    titles = Session.objects.filter(owner=user).values_list("title", flat=True)
    assert sorted(titles) == [f"question {i}" for i in range(4)]
    assert not Message.objects.filter(content__startswith="question 4").exists()


def test_json_syntax_error_in_the_middle_stops_there_with_a_report(user, tmp_path, import_file):
    """A syntax error after two records: both import, the error is reported with its place."""
    text = json.dumps(_sharegpt(2))[:-1] + ', {"id": "bad", "conversations": [}]'
    path = tmp_path / "bad.json"
    path.write_text(text)
    report = import_file(path)
    assert report.imported == 2
    assert "JSON syntax error" in report.problems[0]["message"]
    assert "after 2 complete record(s)" in report.problems[0]["message"]


def test_broken_utf8_is_replaced_not_fatal(user, tmp_path, import_file):
    """Invalid UTF-8 bytes become U+FFFD; the conversation imports and the report counts the repairs."""
    raw = json.dumps(_sharegpt(1), ensure_ascii=False).encode().replace(b"answer 0", b"caf\xe9 \xff answer")
    path = tmp_path / "latin1.json"
    path.write_bytes(b"\xef\xbb\xbf" + raw)  # a BOM too
    report = import_file(path)
    assert report.imported == 1
    assert Message.objects.get(role="assistant").content == "caf\ufffd \ufffd answer"
    assert any("2 invalid UTF-8 byte sequence(s)" in p["message"] for p in report.problems)


def test_nul_bytes_and_lone_surrogates_are_cleaned(user, tmp_path, import_file):
    """JSON escapes PostgreSQL cannot store (``\\u0000``) become U+FFFD; a lone surrogate escape
    (which the yajl parser turns into "?") does not stop the import; a valid pair stays one character."""
    path = tmp_path / "nul.json"
    path.write_text('[{"id": "n", "conversations": [{"from": "human", "value": "a\\u0000b"},'
                    ' {"from": "gpt", "value": "x\\ud800y \\ud83d\\ude00"}]}]')
    report = import_file(path)
    assert report.imported == 1
    assert list(Message.objects.order_by("position").values_list("content", flat=True)) == ["a\ufffdb", "x?y 😀"]


def test_repair_text_and_repair_json_make_storable_strings():
    """Lone surrogates (from Python's json, or any other reader) and NULs become U+FFFD, in metadata too."""
    from archive.drafts import repair_json, repair_text

    assert repair_text("x\ud800y\x00") == "x\ufffdy\ufffd"
    assert repair_text("\ud83d\ude00") == "😀"
    assert repair_text(None) == "" and repair_text(12) == "12"
    assert repair_json({"k\x00": ["\ud800", 1, None, float("nan")]}) == {"k\ufffd": ["\ufffd", 1, None, None]}


@pytest.mark.parametrize("content, expected", [
    (b"", "the file is empty"),
    (b"   \n", "the file is empty"),
    (b"<html>not json</html>", "not JSON"),
])
def test_files_that_are_not_archives_report_and_import_nothing(user, tmp_path, import_file, content, expected):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    report = import_file(path)
    assert report.imported == 0 and expected in report.problems[0]["message"]
    assert not Session.objects.exists()


def test_unknown_records_are_skipped_with_a_reason(user, tmp_path, import_file):
    """Records of no known shape (and non-objects) are skipped one by one; the good ones import."""
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([*_sharegpt(1), {"hello": "world"}, 42, *_sharegpt(2)[1:]]))
    report = import_file(path)
    assert report.imported == 2 and report.skipped == 2
    assert [s["reason"] for s in report.skipped_items] == ["no 'conversations' list", "not a conversation object"]


def test_a_file_whose_first_record_has_no_known_shape(user, tmp_path, import_file):
    """Auto-detection looks at each record until one has a known shape; the unknown ones are skipped."""
    path = tmp_path / "odd.json"
    path.write_text(json.dumps([{"hello": "world"}, *_sharegpt(1)]))
    report = import_file(path)
    assert (report.format, report.imported, report.skipped) == ("sharegpt", 1, 1)
    assert report.skipped_items[0]["reason"] == "not a conversation of any known format"


def test_a_conversation_the_database_refuses_leaves_no_rows(user, tmp_path, import_file, monkeypatch):
    """When writing a batch fails in the database, its conversations are written one by one, each in
    its own transaction: the failing one leaves no session, run or message; the others land."""
    _refused_conversation_leaves_no_rows(tmp_path, import_file, monkeypatch)


@pytest.mark.django_db(transaction=True)
def test_atomicity_holds_with_the_writer_thread(tmp_path, monkeypatch):
    """The same outside a transaction, where PostgreSQL imports write from a second thread."""
    from archive import services as archive_services
    from tests.support.factories import UserFactory

    owner = UserFactory()
    _refused_conversation_leaves_no_rows(
        tmp_path, lambda path, **kw: archive_services.import_archive(path=path, owner=owner, **kw), monkeypatch,
    )


def _refused_conversation_leaves_no_rows(tmp_path, import_file, monkeypatch):
    real = writer.insert_rows

    def failing(model, rows):
        if model is Message and any(r["content"] == "answer 1" for r in rows):
            real(model, rows[:1])  # part of it is written first, then the database fails
            raise writer.DatabaseError("simulated: value too long")
        return real(model, rows)

    monkeypatch.setattr(writer, "insert_rows", failing)
    path = tmp_path / "three.json"
    path.write_text(json.dumps(_sharegpt(3)))
    report = import_file(path)
    assert (report.imported, report.skipped) == (2, 1)
    assert report.skipped_items[0]["source_id"] == "c1"
    assert "the database refused it (simulated: value too long)" in report.skipped_items[0]["reason"]
    assert sorted(Session.objects.values_list("title", flat=True)) == ["question 0", "question 2"]
    assert Run.objects.count() == 2 and Message.objects.count() == 4
    assert not Message.objects.filter(content__in=["question 1", "answer 1"]).exists()
    assert ImportedConversation.objects.count() == 2


def test_conversations_import_in_batches_with_progress(user, tmp_path, import_file):
    """Small batches: progress is reported after each with bytes read and counts."""
    path = tmp_path / "many.json"
    path.write_text(json.dumps(_sharegpt(25)))
    calls = []
    report = import_file(
        path, batch_conversations=10, progress=lambda r, done, total: calls.append((r.imported, done, total)),
    )
    assert report.imported == 25
    assert [c[0] for c in calls] == [10, 20, 25]
    assert calls[-1][1] == calls[-1][2] == path.stat().st_size


def test_jsonl_with_a_broken_line_and_a_cut_last_line(user, tmp_path, import_file):
    """JSON Lines: a broken line is skipped with its line number, a cut last line reported, the rest imported."""
    lines = [
        {"run_id": "r1", "parent_run_id": None, "session_id": "s1", "input": "hi", "output": "hello", "model": "m"},
        {"run_id": "r2", "parent_run_id": "r1", "session_id": "s1", "input": "more", "output": "sure", "model": "m"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{broken json\n" + '{"run_id": "r3", "parent_run_id": "r2"'
    path = tmp_path / "runs.jsonl"
    path.write_text(text)
    report = import_file(path)
    assert report.format == "jsonl" and report.imported == 1 and report.skipped == 2
    reasons = [s["reason"] for s in report.skipped_items]
    assert "line 3 is not valid JSON" in reasons[0] and reasons[1] == "the last line is cut off"
    (session,) = Session.objects.filter(owner=user)
    runs = list(Run.objects.filter(session=session).order_by("depth"))
    assert [(r.depth, r.model) for r in runs] == [(0, "m"), (1, "m")]
    assert runs[1].parent_run_id == runs[0].pk


def test_import_command_prints_the_report(user, data_dir, capsys):
    """``manage.py import_conversations`` imports for the named user, prints counts, file problems
    and every skipped record with its reason, and records the import as a job."""
    call_command("import_conversations", str(data_dir / "chatgpt_conversations.json"), "--user", user.username)
    out = capsys.readouterr().out
    assert "(chatgpt): 2 conversation(s) imported (5 runs, 12 messages), 2 skipped" in out
    assert "skipped" in out and "conv-cycle" in out and "cycle" in out
    assert "no mapping" in out
    job = ImportJob.objects.get(owner=user)
    assert job.status == "succeeded" and job.imported == 2 and job.report["skipped"] == 2


def test_import_command_refuses_unknown_user_and_missing_file(user, data_dir):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no user named"):
        call_command("import_conversations", str(data_dir / "sharegpt.json"), "--user", "nobody")
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_conversations", "/nonexistent.json", "--user", user.username)


@pytest.mark.parametrize("runs, reason", [
    ([{"run_id": "a", "parent_run_id": "b", "messages": [{"role": "user", "content": "x"}]},
      {"run_id": "b", "parent_run_id": "a", "messages": [{"role": "user", "content": "y"}]}], "form a cycle"),
    ([{"run_id": "a", "messages": [{"role": "user", "content": "x"}]},
      {"run_id": "a", "messages": [{"role": "user", "content": "y"}]}], "appears twice"),
    ([{"run_id": "a", "messages": [{"role": "wizard", "content": "x"}]}], "unknown role 'wizard'"),
    ([{"run_id": "a"}], "neither messages nor an input"),
])
def test_broken_arbor_sessions_are_skipped_whole(user, tmp_path, import_file, runs, reason):
    """An Arbor session whose runs form a cycle, repeat an id, use an unknown role or carry no input
    is skipped with the reason, and the good session next to it imports."""
    good = {"arbor": 1, "id": "ok", "title": "good", "runs": [
        {"run_id": "r", "parent_run_id": None, "messages": [{"role": "user", "content": "hi"}]}]}
    path = tmp_path / "arbor.json"
    path.write_text(json.dumps([{"arbor": 1, "id": "bad", "title": "bad", "runs": runs}, good]))
    report = import_file(path)
    assert (report.imported, report.skipped) == (1, 1)
    assert reason in report.skipped_items[0]["reason"] and report.skipped_items[0]["source_id"] == "bad"
    assert list(Session.objects.filter(owner=user).values_list("title", flat=True)) == ["good"]
    assert Run.objects.count() == 1
