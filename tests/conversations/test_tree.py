"""The run tree: path reads, appends, siblings, rewind and fork, with query and row counts."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import services
from conversations.context_spec import path_messages
from conversations.models import Message, Run, RunStatus, Session, Step
from core.errors import Conflict, InvalidInput, NotFound
from tests.support.factories import RunFactory, SessionFactory, build_chain

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("depth", [10, 1000])
def test_path_read_is_one_query_at_any_depth(depth):
    """Reading the path root→leaf costs one query, at depth 10 and 1,000, and returns it in order."""
    session = SessionFactory()
    runs = build_chain(session, depth)
    with CaptureQueriesContext(connection) as queries:
        messages = path_messages(runs[-1])
    assert len(queries) == 1
    assert len(messages) == 2 * depth
    assert [m.content for m in messages[:4]] == ["question 0", "answer 0", "question 1", "answer 1"]
    assert messages[-1].content == f"answer {depth - 1}"
    assert [m.run.depth for m in messages] == sorted(m.run.depth for m in messages)


@pytest.mark.parametrize("depth", [10, 1000])
def test_append_writes_constant_rows(depth, django_capture_on_commit_callbacks):
    """Appending a turn inserts two rows (run, input message) and updates the session, at any depth."""
    session = SessionFactory()
    build_chain(session, depth)
    session.refresh_from_db()
    leaf_id = session.active_run_id
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = services.run_start(session=session, input="next question")
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    audit = [w for w in writes if "audit_auditlog" in w]  # the audit log's one row for the action
    writes = [w for w in writes if "audit_auditlog" not in w]
    assert len(writes) == 3, writes
    assert len(audit) == 1
    assert sum(w.lstrip().upper().startswith("INSERT") for w in writes) == 2
    # savepoint/transaction bookkeeping, the parent check, the branch's chat settings, the writes, the audit row
    assert len(queries) <= 10
    assert run.depth == depth and run.parent_run_id == leaf_id
    assert Session.objects.get(pk=session.pk).active_run_id == run.pk
    assert len(callbacks) == 1  # the task is enqueued only after commit


def test_ancestor_descendant_children_querysets():
    """The tree QuerySet methods read like Wagtail's and chain with ordinary filters."""
    session = SessionFactory()
    a = RunFactory(session=session)
    b = RunFactory(session=session, parent_run=a)
    c1 = RunFactory(session=session, parent_run=b)
    c2 = RunFactory(session=session, parent_run=b)
    d = RunFactory(session=session, parent_run=c2)
    assert list(Run.objects.ancestor_of(d).order_by("depth")) == [a, b, c2]
    assert list(Run.objects.ancestor_of(d, inclusive=True).order_by("depth")) == [a, b, c2, d]
    assert set(Run.objects.descendant_of(b)) == {c1, c2, d}
    assert set(Run.objects.children_of(b)) == {c1, c2}
    assert set(Run.objects.sibling_of(c1, inclusive=False)) == {c2}
    assert list(Run.objects.descendant_of(a).filter(depth=3)) == [d]


def test_rewind_creates_a_branch_and_keeps_the_old_one():
    """Branching from an earlier run leaves the later turns intact, as another branch."""
    session = SessionFactory()
    runs = build_chain(session, 5)
    branch = services.run_start(session=session, input="a different question", parent=runs[1])
    assert branch.parent_run_id == runs[1].pk and branch.depth == 2
    assert set(Run.objects.children_of(runs[1])) == {runs[2], branch}
    session.refresh_from_db()
    assert session.active_run_id == branch.pk
    assert Run.objects.descendant_of(runs[0]).count() == 5


def test_edit_and_regenerate_make_siblings():
    session = SessionFactory()
    runs = build_chain(session, 3)
    edited = services.run_edit(run=runs[2], input="edited")
    regenerated = services.run_regenerate(run=runs[2])
    assert edited.parent_run_id == regenerated.parent_run_id == runs[1].pk
    assert Message.objects.get(run=regenerated, position=0).content == "question 2"
    assert Message.objects.get(run=edited, position=0).content == "edited"
    assert Run.objects.sibling_of(runs[2]).count() == 3


def test_fork_copies_nothing_and_survives_deleting_the_source(user):
    """A fork is one new session row; its context reads the shared ancestors; deleting the source
    session leaves the fork's tree, context and new runs working."""
    source = SessionFactory(owner=user)
    runs = build_chain(source, 50)
    runs_before, messages_before = Run.objects.count(), Message.objects.count()
    with CaptureQueriesContext(connection) as queries:
        fork = services.session_fork(run=runs[19], owner=user)
    inserts = [q for q in queries if q["sql"].lstrip().upper().startswith("INSERT")
               and "audit_auditlog" not in q["sql"]]  # the audit log's row is not part of the tree
    assert len(inserts) == 1
    assert (Run.objects.count(), Message.objects.count()) == (runs_before, messages_before)
    assert fork.active_run_id == runs[19].pk and fork.forked_from_run_id == runs[19].pk

    services.session_delete(session=source)
    new = services.run_start(session=fork, input="continue in the fork")
    assert new.parent_run_id == runs[19].pk and new.depth == 20
    assert [m.content for m in path_messages(new)][:2] == ["question 0", "answer 0"]
    assert fork.visible_runs().count() == 21
    assert fork.can_branch_from(runs[3]) and not fork.can_branch_from(runs[30])


def test_fork_of_running_run_is_refused(user):
    session = SessionFactory(owner=user)
    run = RunFactory(session=session, status=RunStatus.RUNNING)
    with pytest.raises(Conflict):
        services.session_fork(run=run, owner=user)


def test_branching_from_a_run_outside_the_session_is_refused():
    mine, theirs = SessionFactory(), SessionFactory()
    foreign = build_chain(theirs, 2)[-1]
    with pytest.raises(NotFound):
        services.run_start(session=mine, input="hi", parent=foreign)
    assert Run.objects.filter(session=mine).count() == 0


@pytest.mark.parametrize("bad", ["", "   \n", "x" * 40_000, None, 42])
def test_bad_input_is_refused_and_writes_nothing(bad):
    session = SessionFactory()
    with pytest.raises(InvalidInput):
        services.run_start(session=session, input=bad)
    assert Run.objects.count() == 0 and Step.objects.count() == 0


def test_parent_still_running_is_refused():
    session = SessionFactory()
    running = RunFactory(session=session, status=RunStatus.RUNNING)
    with pytest.raises(Conflict):
        services.run_start(session=session, input="too early", parent=running)


def test_set_active_picks_the_newest_leaf_below_a_sibling():
    """Switching to a sibling shows the newest branch under it, and survives a reload (stored)."""
    session = SessionFactory()
    root = RunFactory(session=session)
    left = RunFactory(session=session, parent_run=root)
    left_leaf = RunFactory(session=session, parent_run=left)
    right = RunFactory(session=session, parent_run=root)
    services.session_set_active(session=session, run=left)
    assert Session.objects.get(pk=session.pk).active_run_id == left_leaf.pk
    services.session_set_active(session=session, run=right)
    assert Session.objects.get(pk=session.pk).active_run_id == right.pk


def test_prune_removes_events_of_long_finished_runs_only(settings):
    """Embedded mode keeps run events as rows; the periodic prune deletes them once a run has been
    finished for longer than the retention period, and leaves running runs' events alone."""
    from datetime import timedelta

    from django.utils import timezone

    from conversations.selectors import runs_finished_before
    from streams.backends import DatabaseRunStream
    from streams.models import RunEvent

    stream = DatabaseRunStream()
    session = SessionFactory()
    old = RunFactory(session=session, finished_at=timezone.now() - timedelta(hours=3))
    recent = RunFactory(session=session)
    running = RunFactory(session=session, status=RunStatus.RUNNING, finished_at=None)
    for run in (old, recent, running):
        stream.publish(run.pk, "delta", {"text": "x"})
    assert stream.prune(runs_finished_before(timezone.now() - timedelta(seconds=3600))) == 1
    assert set(RunEvent.objects.values_list("run_id", flat=True)) == {recent.pk, running.pk}
