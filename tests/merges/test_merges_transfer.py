"""Arbor JSON and JSON Lines round-trip provenance: export → import gives the same fused runs, merge turns (turns
and digest) and fan-outs, with new ids, and the chat of the copy shows them."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from archive import exporters
from archive import services as archive_services
from conversations.models import BranchLabel, Message, Run, RunStatus, Session
from merges import services
from merges.models import FanOut, Provenance
from tests.support.factories import SessionFactory, build_chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def import_file(user):
    return lambda path: archive_services.import_archive(path=path, owner=user, format="auto")


def _finish_all(session) -> None:
    for run in Run.objects.filter(session=session, status=RunStatus.QUEUED):
        Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
        Message.objects.create(run=run, position=1, role="assistant", content=f"answer of {run.model}")


def _inputs(run) -> str:
    return Message.objects.get(run=run, position=0).content[:40]


def signature(session) -> list:
    """Id-free provenance of a session: kind, mode, name, texts, the depth and input of each source."""
    rows = []
    for p in Provenance.objects.filter(run__session=session).order_by("created_at"):
        rows.append((p.kind, p.mode, p.branch_name, p.instruction, p.digest, p.run.depth, _inputs(p.run),
                     p.source_run.depth if p.source_run else None,
                     [(s.run.depth, s.run.model, _inputs(s.run)) for s in p.sources.order_by("position")]))
    groups = sorted(sorted(r.model for r in g.runs.all()) for g in FanOut.objects.filter(session=session))
    return [rows, groups]


@pytest.mark.parametrize("fmt", ["arbor", "jsonl"])
def test_export_round_trips_fuse_merge_and_fan_out(user, tmp_path, import_file, client, fmt):
    session = SessionFactory(owner=user, title="Provenance")
    main = build_chain(session, 3)
    side = build_chain(session, 6, parent=main[0])
    BranchLabel.objects.create(session=session, run=side[-1], name="draft B")
    Session.objects.filter(pk=session.pk).update(active_run=main[-1])
    session.refresh_from_db()
    plan = services.merge_plan(session=session, target=main[-1], source=side[-1], mode="turns",
                               run_ids=[side[1].pk, side[4].pk])
    merge = services.merge_create(session=session, plan=plan)
    group = services.fan_out(session=session, input="Which one?", variants=[
        services.Variant(model="model-a"), services.Variant(model="model-b")])
    _finish_all(session)
    fused = services.fuse(session=session, run=group.started[0], source_ids=[r.pk for r in group.started],
                          instruction="Combine them.")
    _finish_all(session)
    digest = services.merge_plan(session=session, target=Run.objects.get(pk=fused.pk), source=side[-1],
                                 mode="digest", digest="B settled it.")
    services.merge_create(session=session, plan=digest)
    original = signature(session)
    assert len(original[0]) == 3 and original[1] == [["model-a", "model-b"]]

    path = tmp_path / ("session.json" if fmt == "arbor" else "session.jsonl")
    path.write_bytes(b"".join(exporters.export_session(session=session, format=fmt).chunks))
    if fmt == "arbor":
        record = json.loads(path.read_text())[0]
    else:  # the session's sections ride on its first line only
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        record = lines[0]["sections"]
        assert len(lines) == Run.objects.filter(session=session).count()
        assert not any("sections" in line for line in lines[1:])
    assert {p["kind"] for p in record["provenance"]} == {"fuse", "merge"} and len(record["fan_outs"]) == 1
    before = set(Session.objects.values_list("pk", flat=True))
    report = import_file(path)
    assert (report.imported, report.skipped) == (1, 0)
    (copy,) = Session.objects.filter(owner=user).exclude(pk__in=before)
    assert signature(copy) == original
    assert not Provenance.objects.filter(run__session=copy, sources__run__session=session).exists()
    twin = Provenance.objects.get(run__session=copy, kind="merge", mode="turns").run
    assert twin.pk != merge.pk
    snapshot = Message.objects.get(run=twin, position=0).metadata["provenance"]
    assert {s["run_id"] for s in snapshot["sources"]} <= {str(pk) for pk in copy.runs.values_list("pk", flat=True)}
    client.force_login(user)
    page = client.get(f"/s/{copy.pk}/?at={twin.pk}").content.decode()
    assert "merged from <em>draft B</em>" in page


def test_import_skips_provenance_naming_runs_outside_the_file(user, tmp_path, import_file):
    session = SessionFactory(owner=user)
    main = build_chain(session, 2)
    side = build_chain(session, 2, parent=main[0])
    services.merge_create(session=session, plan=services.merge_plan(
        session=session, target=main[-1], source=side[-1], mode="turns"))
    path = tmp_path / "session.json"
    record = json.loads(b"".join(exporters.export_session(session=session, format="arbor").chunks))
    record[0]["provenance"][0]["sources"] = ["not-a-run"]
    path.write_text(json.dumps(record))
    before = set(Session.objects.values_list("pk", flat=True))
    report = import_file(path)
    assert report.imported == 1
    (copy,) = Session.objects.filter(owner=user).exclude(pk__in=before)
    assert not Provenance.objects.filter(run__session=copy).exists()
    assert "provenance entry" in json.dumps(report.imported_items)
