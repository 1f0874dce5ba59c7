"""The demo (issue 15): "Tour of Arbor" and a fork of it, imported from archive/demo/tour-of-arbor.json
through the archive importer — and what that needed from Arbor JSON: forks within one file,
compaction markers and comparisons (exported with their session and imported back)."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from archive import exporters, services
from archive.models import ImportedConversation
from comparisons.models import Comparison, Variant, VariantRun, Vote, VoteRank
from conversations import services as conv
from conversations.models import Message, Run, RunStatus, Session
from memory.models import Agent, Compaction
from tests.archive.conftest import tree_signature
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return UserFactory(username="admin", is_superuser=True, is_staff=True)


def load_demo(**kwargs) -> str:
    out = io.StringIO()
    call_command("load_demo", stdout=out, **kwargs)
    return out.getvalue()


def tour_of(owner) -> Session:
    return Session.objects.get(owner=owner, title="Tour of Arbor")


def inputs(runs) -> list[str]:
    return [Message.objects.get(run=r, position=0).content for r in runs]


def test_the_demo_has_a_real_tree(admin):
    assert load_demo() == "Demo loaded for admin: 'Tour of Arbor', 'Tour of Arbor (fork)' (13 runs)\n"
    tour = tour_of(admin)
    runs = list(Run.objects.filter(session=tour))
    assert len(runs) == 12 and all(r.status == RunStatus.SUCCEEDED and r.finished_at for r in runs)
    assert all(r.parent_run is None or r.depth == r.parent_run.depth + 1 for r in runs)
    children = Counter(r.parent_run_id for r in runs if r.parent_run_id)
    branch_points = [pk for pk, n in children.items() if n > 1]
    assert len(branch_points) == 3  # the edit, the regeneration, and the comparison's variants
    siblings = [list(Run.objects.filter(parent_run_id=pk).order_by("created_at")) for pk in branch_points]
    kinds = sorted("regenerated" if len(set(inputs(s))) == 1 and len(s) == 2 else
                   "edited" if len(s) == 2 else "compared" for s in siblings)
    assert kinds == ["compared", "edited", "regenerated"]
    regenerated = next(s for s in siblings if len(s) == 2 and len(set(inputs(s))) == 1)
    answers = [Message.objects.get(run=r, position=1).content for r in regenerated]
    assert answers[0] != answers[1]
    active = Run.objects.get(pk=tour.active_run_id)
    assert active.depth == 5 and tour.updated_at >= active.finished_at

    fork = Session.objects.get(owner=admin, title="Tour of Arbor (fork)")
    fork_point = Run.objects.get(pk=fork.forked_from_run_id)
    assert fork_point.session == tour and inputs([fork_point]) == ["What is a fork?"]
    (own,) = Run.objects.filter(session=fork)
    assert own.parent_run == fork_point and own.depth == fork_point.depth + 1 and fork.active_run == own
    assert fork.visible_runs().count() == 1 + 4  # its own run and the four it shares
    assert [m.run_id for m in Message.objects.on_path_to(own)][:2] == [
        Run.objects.get(session=tour, depth=0).pk] * 2


def test_the_demo_has_a_compaction_marker_and_a_finished_comparison_with_votes(admin):
    load_demo()
    tour = tour_of(admin)
    (compaction,) = Compaction.objects.filter(run__session=tour)
    assert compaction.is_ready and compaction.summary.startswith("The user asked what Arbor is")
    covered = Message.objects.filter(pk__in=compaction.replaced_message_ids)
    assert sorted((m.run.depth, m.position) for m in covered) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert covered.filter(run__session=tour).count() == 4
    assert compaction.applied[0]["messages"] == compaction.replaced_message_ids
    assert compaction.run.children.filter(session=tour).count() == 3 and compaction.from_depth == 2

    (comparison,) = Comparison.objects.filter(session=tour, owner=admin)
    assert comparison.mode == "replay" and comparison.turn_count == 2
    assert inputs([comparison.source_run])[0] == comparison.prompts[1]
    assert [t.name for t in comparison.tags.all()] == ["tour"]
    variants = list(comparison.variants.order_by("position"))
    assert [v.label for v in variants] == ["Short", "Detailed"]
    for v in variants:
        assert v.agent.owner == admin and v.agent.made_by_comparison and v.agent.system_prompt
        turns = list(VariantRun.objects.filter(variant=v).order_by("turn").select_related("run"))
        assert [t.run.parent_run_id for t in turns] == [comparison.branch_point_id, turns[0].run_id]
        assert inputs([t.run for t in turns]) == comparison.prompts
        assert all(t.run.agent == v.agent for t in turns)
    votes = list(Vote.objects.filter(comparison=comparison).order_by("turn"))
    assert [v.choice for v in votes] == ["a_better", "b_better"]
    ranks = [{r.variant.label: r.rank for r in VoteRank.objects.filter(vote=v)} for v in votes]
    assert ranks == [{"Short": 1, "Detailed": 2}, {"Short": 2, "Detailed": 1}]


def test_the_demo_loads_once_and_stays_deleted_once_deleted(admin):
    load_demo()
    rows = (Session.objects.count(), Run.objects.count(), Message.objects.count(), Compaction.objects.count(),
            Comparison.objects.count(), Variant.objects.count(), Vote.objects.count(), Agent.objects.count())
    assert load_demo() == ""  # the next start: nothing new, nothing said
    assert load_demo(verbosity=2) == "The demo was loaded for admin before: nothing to do\n"
    tour = tour_of(admin)
    conv.session_delete(session=tour)
    assert load_demo() == ""
    after = (Session.objects.count(), Run.objects.count(), Message.objects.count(), Compaction.objects.count(),
             Comparison.objects.count(), Variant.objects.count(), Vote.objects.count(), Agent.objects.count())
    assert after == rows
    assert Session.objects.alive().filter(owner=admin).count() == 1  # the fork lives on without its source
    fork = Session.objects.get(title="Tour of Arbor (fork)")
    assert fork.visible_runs().count() == 5


def test_the_demo_goes_to_the_administrator_or_the_user_given(admin):
    other = UserFactory(username="someone")
    load_demo(user="someone")
    assert tour_of(other) and not Session.objects.filter(owner=admin).exists()
    load_demo()
    assert tour_of(admin)
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        load_demo(user="nobody")
    assert ImportedConversation.objects.filter(source_format="arbor", source_id="arbor-tour").count() == 2


def test_an_export_of_the_tour_carries_its_compaction_and_comparison_back(admin, tmp_path):
    load_demo()
    tour = tour_of(admin)
    exported = json.loads(b"".join(exporters.session_to_arbor(tour)))
    (record,) = exported
    assert [c["status"] for c in record["compactions"]] == ["ready"]
    run_ids = {r["run_id"] for r in record["runs"]}
    assert {ref["run_id"] for ref in record["compactions"][0]["replaced_messages"]} <= run_ids
    (comparison,) = record["comparisons"]
    assert comparison["branch_point_run_id"] in run_ids and len(comparison["votes"]) == 2
    assert all(r in run_ids for v in comparison["variants"] for r in v["runs"])

    path = tmp_path / "tour.json"
    path.write_text(json.dumps(exported))
    other = UserFactory()
    report = services.import_archive(path=path, owner=other, format="arbor")
    assert report.imported == 1 and report.imported_items[0]["warnings"] == []
    copy = Session.objects.get(owner=other)
    assert tree_signature(copy) == tree_signature(tour)
    (marker,) = Compaction.objects.filter(run__session=copy)
    original = Compaction.objects.get(run__session=tour)
    assert marker.summary == original.summary and marker.run.depth == original.run.depth
    assert sorted((m.run.depth, m.position) for m in Message.objects.filter(pk__in=marker.replaced_message_ids)) == \
        sorted((m.run.depth, m.position) for m in Message.objects.filter(pk__in=original.replaced_message_ids))
    (again,) = Comparison.objects.filter(session=copy)
    assert again.owner == other and again.prompts == comparison["prompts"]
    assert sorted(Vote.objects.filter(comparison=again).values_list("turn", "choice")) == [(0, "a_better"),
                                                                                           (1, "b_better")]
    assert {v.config_key for v in again.variants.all()} == {v.config_key for v in Comparison.objects.get(
        session=tour).variants.all()}
    assert all(vr.run.session == copy for vr in VariantRun.objects.filter(variant__comparison=again))


def test_a_fork_whose_source_is_not_in_the_file_and_a_bad_comparison_are_imported_with_warnings(user, tmp_path):
    record = json.loads(services.DEMO_FILE.read_text())
    tour, fork = record
    tour["comparisons"][0]["votes"][0]["turn"] = 7
    path = tmp_path / "reversed.json"
    path.write_text(json.dumps([fork, tour]))  # the fork comes before its source
    report = services.import_archive(path=path, owner=user, format="arbor")
    assert report.imported == 2
    warnings = {item["title"]: item["warnings"] for item in report.imported_items}
    assert warnings["Tour of Arbor (fork)"] == [
        "forked from run 'tour-4', which is not among the runs imported before it: imported as a tree of its own"]
    assert warnings["Tour of Arbor"] == [
        "comparison 0: a vote names no prompt of the comparison, or a prompt twice: left out"]
    alone = Session.objects.get(owner=user, title="Tour of Arbor (fork)")
    assert alone.forked_from_run is None and Run.objects.get(session=alone).parent_run is None
    assert not Comparison.objects.filter(owner=user).exists()
    assert Compaction.objects.filter(run__session__owner=user).count() == 1


def test_a_broken_demo_file_is_an_error_not_a_half_demo(admin, tmp_path, monkeypatch):
    broken = tmp_path / "demo.json"
    record = json.loads(services.DEMO_FILE.read_text())
    record[0]["compactions"][0]["run_id"] = "nowhere"
    broken.write_text(json.dumps(record))
    monkeypatch.setattr(services, "DEMO_FILE", broken)
    with pytest.raises(CommandError, match="did not import cleanly"):
        load_demo()
    assert not Session.objects.exists() and not Run.objects.exists() and not ImportedConversation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_fork_in_a_later_batch_waits_for_its_source_to_be_written(user, settings):
    """On PostgreSQL batches are written by threads while the file is read: the fork's batch waits
    until the batch with its fork point is committed, then hangs under it."""
    settings.ARBOR_IMPORT_WRITERS = 2
    report = services.import_archive(path=services.DEMO_FILE, owner=user, format="arbor", batch_conversations=1)
    assert report.imported == 2 and all(not item["warnings"] for item in report.imported_items)
    fork = Session.objects.get(owner=user, title="Tour of Arbor (fork)")
    assert fork.forked_from_run.session.title == "Tour of Arbor"
    assert Run.objects.get(session=fork).depth == fork.forked_from_run.depth + 1
