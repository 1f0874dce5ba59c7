"""Run snapshots: export_runs writes one run per line; import_runs rebuilds the same tree."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from archive.exporters import runs_for_export, write_runs
from archive.formats import RUN_FORMAT as FORMAT
from archive.snapshots import read_runs
from conversations.models import Message, Run, RunStatus, Session
from tests.support.factories import RunFactory, SessionFactory, UserFactory


def make_tree(owner):
    """root → (a → a1, b): a branching session, plus a fork continuing from a1 in a second session."""
    session = SessionFactory(owner=owner, title="Trip planning")
    start = timezone.now() - timedelta(hours=1)
    root = RunFactory(session=session, turn=("Plan a trip to Kyoto", "Sure: when?"), created_at=start,
                      started_at=start, first_token_at=start + timedelta(seconds=0.4),
                      finished_at=start + timedelta(seconds=2), prompt_tokens=31, completion_tokens=12)
    a = RunFactory(session=session, parent_run=root, turn=("In April", "Cherry blossom season."), memory_id="travel")
    b = RunFactory(session=session, parent_run=root, turn=("In July", None), status=RunStatus.FAILED,
                   error_type="timeout", error_message="The model endpoint did not answer in time.")
    a1 = RunFactory(session=session, parent_run=a, turn=("Hotels?", "Try Gion."))
    Message.objects.create(run=a1, position=2, role="assistant", content="", tool_calls=[
        {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}], metadata={"k": 1})
    Message.objects.create(run=a1, position=3, role="tool", content="3 hotels", tool_call_id="c1")
    Session.objects.filter(pk=session.pk).update(active_run=a1)
    fork = Session.objects.create(owner=owner, title="Fork", forked_from_run=a1, active_run=a1)
    f1 = RunFactory(session=fork, parent_run=a1, turn=("And restaurants?", "Nishiki market."))
    Session.objects.filter(pk=fork.pk).update(active_run=f1)
    return [root, a, b, a1, f1]


def tree_shape(runs_by_id, root_ids):
    """A comparable picture of a tree: nested (input, status, usage, messages, children) tuples."""
    children = {}
    for run in runs_by_id.values():
        children.setdefault(run.parent_run_id, []).append(run)

    def node(run):
        msgs = tuple((m.position, m.role, m.content, m.name, json.dumps(m.tool_calls), m.tool_call_id,
                      json.dumps(m.metadata, sort_keys=True)) for m in run.messages.order_by("position"))
        kids = sorted((node(c) for c in children.get(run.pk, [])), key=repr)
        return (run.status, run.model, run.memory_id, run.prompt_tokens, run.completion_tokens, run.error_type,
                run.created_at, run.finished_at, run.first_token_at, run.session.title, msgs, tuple(kids))

    return sorted((node(runs_by_id[i]) for i in root_ids), key=repr)


def export(runs) -> str:
    out = io.StringIO()
    write_runs(runs_for_export(runs), out)
    return out.getvalue()


@pytest.mark.django_db
def test_export_writes_one_run_per_line_with_the_documented_fields(user):
    """Each line has run_id, parent_run_id, input, output, messages, usage and timings; parents come first."""
    runs = make_tree(user)
    text = export(Run.objects.filter(session__owner=user))
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 5
    first = lines[0]
    assert first["format"] == FORMAT and first["run_id"] == str(runs[0].pk) and first["parent_run_id"] is None
    assert first["input"] == "Plan a trip to Kyoto" and first["output"] == "Sure: when?"
    assert first["usage"] == {"prompt_tokens": 31, "completion_tokens": 12, "usage_counted": False}
    assert first["timings"]["time_to_first_token_seconds"] == pytest.approx(0.4)
    assert first["timings"]["latency_seconds"] == pytest.approx(2.0)
    seen = set()
    for line in lines:
        assert line["parent_run_id"] is None or line["parent_run_id"] in seen
        seen.add(line["run_id"])
    failed = next(line for line in lines if line["input"] == "In July")
    assert failed["output"] is None
    assert failed["error"] == {"type": "timeout", "message": "The model endpoint did not answer in time."}


@pytest.mark.django_db
def test_import_rebuilds_an_identical_tree(user):
    """Exported runs imported for another user (new ids) form the same tree: parents, messages,
    tool calls, usage, timings, statuses, memory ids, titles, the fork and the active branches."""
    runs = make_tree(user)
    text = export(Run.objects.filter(session__owner=user))
    other = UserFactory()
    report = read_runs(io.StringIO(text), user=other, keep_ids=False)
    assert report.ok and report.runs_imported == 5 and report.sessions_imported == 2
    originals = {r.pk: r for r in Run.objects.filter(session__owner=user)}
    copies = {r.pk: r for r in Run.objects.filter(session__owner=other)}
    assert not set(originals) & set(copies)
    assert tree_shape(copies, [r.pk for r in copies.values() if r.parent_run_id is None]) == \
        tree_shape(originals, [runs[0].pk])
    fork = Session.objects.get(owner=other, title="Fork")
    assert str(fork.forked_from_run_id) == report.run_ids[str(runs[3].pk)]
    assert str(fork.active_run_id) == report.run_ids[str(runs[4].pk)]
    planning = Session.objects.get(owner=other, title="Trip planning")
    assert str(planning.active_run_id) == report.run_ids[str(runs[3].pk)]


@pytest.mark.django_db(transaction=True)
def test_export_then_import_into_an_empty_database_keeps_the_ids(tmp_path):
    """export_runs → (database emptied) → import_runs gives back the same run and session ids."""
    owner = UserFactory(username="alice")
    runs = make_tree(owner)
    path = tmp_path / "runs.jsonl"
    call_command("export_runs", "--user", "alice", "-o", str(path), stderr=io.StringIO())
    before = tree_shape({r.pk: r for r in Run.objects.all()}, [runs[0].pk])
    ids_before = sorted(str(pk) for pk in Run.objects.values_list("pk", flat=True))
    Session.objects.update(active_run=None, forked_from_run=None)
    for run in Run.objects.order_by("-depth"):
        run.delete()
    Session.objects.all().delete()
    assert Run.objects.count() == 0
    out = io.StringIO()
    call_command("import_runs", str(path), "--user", "alice", stdout=out, stderr=io.StringIO())
    assert "5 runs in 2 sessions imported" in out.getvalue()
    assert sorted(str(pk) for pk in Run.objects.values_list("pk", flat=True)) == ids_before
    assert tree_shape({r.pk: r for r in Run.objects.all()}, [runs[0].pk]) == before


@pytest.mark.django_db
def test_import_skips_bad_lines_with_reasons_and_imports_the_rest(user):
    """Malformed JSON, a bad field, a duplicate, an unknown parent (and its child) are reported by
    line; valid lines still import."""
    runs = make_tree(user)
    lines = export(Run.objects.filter(pk=runs[0].pk)).splitlines()
    good = json.loads(lines[0])
    orphan = dict(
        good, run_id="11111111-1111-1111-1111-111111111111", parent_run_id="22222222-2222-2222-2222-222222222222",
    )
    orphan_child = dict(good, run_id="33333333-3333-3333-3333-333333333333", parent_run_id=orphan["run_id"])
    bad_role = dict(good, run_id="44444444-4444-4444-4444-444444444444", messages=[{"role": "wizard", "content": "x"}])
    text = "\n".join([
        json.dumps(good), "{not json", json.dumps(bad_role), json.dumps(good), json.dumps(orphan),
        json.dumps(orphan_child),
    ]) + "\n"
    other = UserFactory()
    report = read_runs(io.StringIO(text), user=other, keep_ids=False)
    assert report.runs_imported == 1
    reasons = {s.line: s.reason for s in report.skipped}
    assert set(reasons) == {2, 3, 4, 5, 6}
    assert reasons[2].startswith("not JSON")
    assert "role" in reasons[3]
    assert "earlier in the file" in reasons[4]
    assert "neither in the file" in reasons[5]
    assert "was skipped" in reasons[6]


@pytest.mark.django_db
def test_import_with_kept_ids_skips_runs_that_exist(user):
    """Importing a file twice with kept ids: the second time every run is reported as existing."""
    make_tree(user)
    text = export(Run.objects.filter(session__owner=user))
    report = read_runs(io.StringIO(text), user=user)
    assert report.runs_imported == 0 and len(report.skipped) == 5
    assert all("exists already" in s.reason for s in report.skipped)


@pytest.mark.django_db
def test_commands_refuse_bad_arguments(user, tmp_path):
    """Unknown users, unknown sessions and unreadable files are clear command errors."""
    with pytest.raises(CommandError, match="No user"):
        call_command("export_runs", "--user", "nobody", stderr=io.StringIO())
    with pytest.raises(CommandError, match="session"):
        call_command("export_runs", "--session", "not-a-uuid", stderr=io.StringIO())
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_runs", str(tmp_path / "missing.jsonl"), "--user", user.username)
    empty = tmp_path / "bad.jsonl"
    empty.write_text("garbage\n")
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_runs", str(empty), "--user", user.username, stderr=io.StringIO(), stdout=io.StringIO())
