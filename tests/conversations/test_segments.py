"""Path reads over run segments (conversations/models.py) against the recursive CTE they replaced.

Random trees are grown (seeded, so a failure reproduces) through every way runs are made: turns
and branches (``run_start``), edits and regenerations (siblings), forks and turns in them, bulk
chains under any run (``RunQuerySet.bulk_create``), factories (``Run.save``), archive imports
(``COPY`` on PostgreSQL), run-file imports under existing runs and memory-store writes. Then, for
every run, ``Message.objects.path`` and ``Run.objects.ancestor_of`` must return exactly what the
old recursive CTE over ``parent_run_id`` selects (with the ORM's field conversions), both inclusive
and not. Runs on SQLite and PostgreSQL alike (whichever ``DATABASE_URL`` names).
"""

from __future__ import annotations

import io
import json
import random
import threading
import uuid
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from archive.importer import import_archive
from archive.snapshots import read_runs
from conversations import services
from conversations.models import Message, Role, Run, RunStatus, Session
from search.memory_store import DatabaseMemoryStore
from tests.support.factories import RunFactory, SessionFactory, build_chain

pytestmark = pytest.mark.django_db


# --- the reference: the recursive CTE the path read used before segments ----------------------------

def cte_ancestors(run_id) -> dict[uuid.UUID, int]:
    """``{run id: depth}`` of ``run_id`` and its ancestors, by walking ``parent_run_id`` up."""
    table = Run._meta.db_table
    sql = (
        f"WITH RECURSIVE path(id, depth) AS ("
        f" SELECT id, depth FROM {table} WHERE id = %s"
        f" UNION ALL"
        f" SELECT (SELECT r.parent_run_id FROM {table} r WHERE r.id = p.id), p.depth - 1 FROM path p WHERE p.depth > 0"
        f") SELECT id, depth FROM path"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Run._meta.pk.get_db_prep_value(run_id, connection)])
        return {uuid.UUID(str(i)): d for i, d in cursor.fetchall()}


def as_row(m) -> tuple:
    return (m.pk, m.run_id, m.run.depth, m.position, m.role, m.content, m.name, m.tool_calls, m.tool_call_id,
            m.metadata, m.token_count)


def cte_path(run_id, *, inclusive: bool = True) -> list[tuple]:
    depths = cte_ancestors(run_id)
    if not inclusive:
        depths.pop(run_id)
    messages = sorted(Message.objects.filter(run_id__in=depths).select_related("run"),
                      key=lambda m: (depths[m.run_id], m.position))
    return [as_row(m) for m in messages]


def assert_paths_match_the_cte() -> int:
    """Every run's path and ancestors, both ways; returns how many runs were checked."""
    runs = list(Run.objects.all())
    for run in runs:
        for inclusive in (True, False):
            assert [as_row(m) for m in Message.objects.path(run, inclusive=inclusive)] == cte_path(
                run.pk, inclusive=inclusive), (run.pk, inclusive)
            expected = set(cte_ancestors(run.pk)) - (set() if inclusive else {run.pk})
            assert set(Run.objects.ancestor_of(run, inclusive=inclusive).values_list("pk", flat=True)) == expected
    return len(runs)


def assert_segments_are_chains() -> None:
    """Each run heads its segment or continues its parent's one level down; one run per depth."""
    runs = {r.pk: r for r in Run.objects.all()}
    for run in runs.values():
        parent = runs.get(run.parent_run_id)
        assert run.segment == run.pk or (parent is not None and run.segment == parent.segment), run.pk
    pairs = [(r.segment, r.depth) for r in runs.values()]
    assert len(pairs) == len(set(pairs))


# --- growing random trees through every writer ----------------------------------------------------------

class Grower:
    """Grows a random forest of sessions for ``user`` with ``rng``; every run ends finished."""

    def __init__(self, rng: random.Random, user):
        self.rng, self.user = rng, user
        self.sessions = [SessionFactory(owner=user)]
        self.n = 0

    def text(self) -> str:
        self.n += 1
        return f"text {self.n} " + "x" * self.rng.randint(0, 40)

    def finish(self, run: Run) -> Run:
        """Mark ``run`` succeeded with an answer; some answers carry tool calls, metadata, a name."""
        Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
        run.status = RunStatus.SUCCEEDED
        extra = {}
        if self.rng.random() < 0.2:
            extra["tool_calls"] = [{"id": f"call_{self.n}", "type": "function",
                                    "function": {"name": "f", "arguments": "{}"}}]
        if self.rng.random() < 0.2:
            extra["metadata"] = {"n": self.n, "tags": ["a"]}
        if self.rng.random() < 0.1:
            extra.update(name="helper", token_count=self.n)
        Message.objects.create(run=run, position=1, role=Role.ASSISTANT, content=self.text(), **extra)
        return run

    def tree_of(self, session: Session) -> list[Run]:
        return list(session.visible_runs().order_by("depth", "created_at"))

    def pick(self) -> tuple[Session, list[Run]]:
        session = self.rng.choice(self.sessions)
        return session, self.tree_of(session)

    def step(self) -> None:
        getattr(self, "op_" + self.rng.choice(
            ["turn", "turn", "turn", "branch", "sibling", "fork", "chain", "factory", "archive", "runfile", "memory"]
        ))()

    def op_turn(self) -> None:
        session, _ = self.pick()
        session.refresh_from_db()
        self.finish(services.run_start(session=session, input=self.text()))

    def op_branch(self) -> None:
        session, tree = self.pick()
        parent = self.rng.choice(tree) if tree else None
        self.finish(services.run_start(session=session, input=self.text(), parent=parent))

    def op_sibling(self) -> None:
        session, tree = self.pick()
        own = [r for r in tree if r.session_id == session.pk]
        if own:
            run = self.rng.choice(own)
            made = (services.run_regenerate(run=run, session=session) if self.rng.random() < 0.5
                    else services.run_edit(run=run, input=self.text(), session=session))
            self.finish(made)

    def op_fork(self) -> None:
        _, tree = self.pick()
        if tree:
            fork = services.session_fork(run=self.rng.choice(tree), owner=self.user)
            self.sessions.append(fork)
            self.finish(services.run_start(session=fork, input=self.text()))

    def op_chain(self) -> None:
        session, tree = self.pick()
        build_chain(session, self.rng.randint(1, 5), parent=self.rng.choice(tree) if tree else None)

    def op_factory(self) -> None:
        session, tree = self.pick()
        parent = self.rng.choice(tree) if tree else None
        if parent is not None and self.rng.random() < 0.5:
            parent = Run.objects.only("id", "depth").get(pk=parent.pk)  # the segment read when saving
        RunFactory(session=session, parent_run=parent)

    def op_archive(self) -> None:
        """An Arbor JSON session with a random tree (parents anywhere earlier in the list)."""
        runs = []
        for i in range(self.rng.randint(1, 12)):
            parent = f"r{self.rng.randrange(i)}" if i and self.rng.random() < 0.9 else None
            runs.append({"run_id": f"r{i}", "parent_run_id": parent, "messages": [
                {"role": "user", "content": self.text()}, {"role": "assistant", "content": self.text()}]})
        path = self.tmp / f"import-{self.n}.json"
        path.write_text(json.dumps({"arbor": 1, "id": f"src-{self.n}", "title": "imported", "runs": runs}))
        report = import_archive(path=path, owner=self.user, format="arbor")
        assert report.imported == 1, report.as_json()
        self.sessions.append(Session.objects.get(pk=next(iter(report.session_ids))))

    def op_runfile(self) -> None:
        """arbor.run/1 lines hanging under an existing run (a run of the database, not the file)."""
        _, tree = self.pick()
        if not tree:
            return
        parent, session_id, lines = str(self.rng.choice(tree).pk), str(uuid.uuid4()), []
        session = {"id": session_id, "forked_from_run_id": parent}  # a fork's runs, exported
        for _ in range(self.rng.randint(1, 3)):
            run_id = str(uuid.uuid4())
            lines.append(json.dumps({"format": "arbor.run/1", "run_id": run_id, "parent_run_id": parent,
                                     "session": session, "input": self.text(), "output": self.text()}))
            parent = run_id if self.rng.random() < 0.7 else parent
        report = read_runs(io.StringIO("\n".join(lines)), user=self.user, keep_ids=False)
        assert not report.skipped, report.skipped
        self.sessions.extend(Session.objects.filter(pk__in=report.session_ids.values()))

    def op_memory(self) -> None:
        _, tree = self.pick()
        if tree:
            store = DatabaseMemoryStore("default", run=self.rng.choice(tree))
            store.add_message({"role": "user", "content": self.text(), "metadata": {"from": "store"}})


def grow(seed: int, user, tmp_path, steps: int) -> Grower:
    grower = Grower(random.Random(seed), user)
    grower.tmp = tmp_path
    for _ in range(steps):
        grower.step()
    return grower


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_path_reads_equal_the_recursive_cte_on_random_trees(seed, user, tmp_path):
    grow(seed, user, tmp_path, steps=45)
    assert_segments_are_chains()
    checked = assert_paths_match_the_cte()
    segments = Run.objects.values("segment").distinct().count()
    assert checked > 60 and 1 < segments < checked  # branches made segments, chains continued them


def test_path_reads_decrypt_and_convert_like_the_orm(settings, user, tmp_path):
    """With encryption on, every row passes through the converters; the result is the ORM's."""
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    grow(7, user, tmp_path, steps=20)
    stored = Message.objects.values_list("content", flat=True).first()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT content FROM {Message._meta.db_table} WHERE content <> '' LIMIT 1")
        assert cursor.fetchone()[0].startswith("enc:v1:") and not stored.startswith("enc:v1:")
    assert assert_paths_match_the_cte() > 10


# --- costs ------------------------------------------------------------------------------------------

def branched_path(session: Session, *, depth: int, every: int) -> Run:
    """A path of ``depth`` runs that takes a second child (a new segment) every ``every`` levels."""
    runs = build_chain(session, every)
    while runs[-1].depth + 1 < depth:
        build_chain(session, 1, parent=runs[-1])  # a side branch, off the path
        runs = build_chain(session, min(every, depth - runs[-1].depth - 1), parent=runs[-1])  # a new segment
    return runs[-1]


@pytest.mark.parametrize("depth, every", [(10, 10), (1000, 1000), (1000, 50)])
def test_path_read_is_one_query_whatever_the_segments(depth, every):
    leaf = branched_path(SessionFactory(), depth=depth, every=every)
    assert leaf.depth == depth - 1
    on_path = Run.objects.ancestor_of(leaf, inclusive=True)
    assert on_path.values("segment").distinct().count() == -(-depth // every)
    with CaptureQueriesContext(connection) as queries:
        messages = Message.objects.path(leaf)
    assert len(queries) == 1 and len(messages) == 2 * depth
    assert [m.run.depth for m in messages] == [d for d in range(depth) for _ in (0, 1)]
    with CaptureQueriesContext(connection) as queries:
        assert len(list(on_path)) == depth
    assert len(queries) == 1
    assert [as_row(m) for m in messages] == cte_path(leaf.pk)


def test_a_turn_continues_its_parents_segment_and_a_sibling_starts_one(django_capture_on_commit_callbacks):
    """The insert tries the parent's segment in a savepoint: a first child keeps it (one INSERT); a
    sibling finds that depth taken and heads a segment of its own (a second INSERT)."""
    session = SessionFactory()
    parent = build_chain(session, 3)[-1]
    with CaptureQueriesContext(connection) as first:
        child = services.run_start(session=session, input="first child", parent=parent)
    with CaptureQueriesContext(connection) as second:
        sibling = services.run_start(session=session, input="second child", parent=parent)
    assert child.segment == parent.segment and sibling.segment == sibling.pk

    def run_inserts(queries):
        return [q for q in queries if q["sql"].startswith(f'INSERT INTO "{Run._meta.db_table}"')]

    assert len(run_inserts(first)) == 1 and len(run_inserts(second)) == 2
    sql = [q["sql"] for q in first]
    at = sql.index(run_inserts(first)[0]["sql"])
    assert sql[at - 1].startswith("SAVEPOINT") and sql[at + 1].startswith("RELEASE SAVEPOINT")
    Run.objects.filter(pk__in=[child.pk, sibling.pk]).update(status=RunStatus.SUCCEEDED)
    sibling.refresh_from_db()
    grandchild = services.run_start(session=session, input="under the sibling", parent=sibling)
    assert grandchild.segment == sibling.pk
    assert [m.content for m in Message.objects.path(grandchild)][-2:] == ["second child", "under the sibling"]


def test_bulk_create_continues_segments_inside_the_batch_only():
    session = SessionFactory()
    runs = build_chain(session, 4)
    assert {r.segment for r in runs} == {runs[0].pk}
    under = build_chain(session, 3, parent=runs[1])  # runs[1] has a child already, outside this batch
    assert {r.segment for r in under} == {under[0].pk}
    assert_segments_are_chains()


def test_deleting_a_leaf_frees_its_place_in_the_segment():
    """Runs are never deleted by Arbor today (parents are protected, sessions soft-deleted), but
    removing a leaf keeps segments chains: the next child of its parent takes the freed depth."""
    session = SessionFactory()
    runs = build_chain(session, 4)
    runs[-1].delete()
    again = RunFactory(session=session, parent_run=runs[-2])
    assert again.segment == runs[0].segment
    assert_segments_are_chains()
    assert assert_paths_match_the_cte() == 4


@pytest.mark.django_db(transaction=True)
def test_two_children_created_at_once_never_share_a_segment_depth(user):
    """Two transactions add a child to the same parent at the same moment: the unique (segment,
    depth) makes the second wait for the first and then head a segment of its own."""
    session = SessionFactory(owner=user)
    parent = build_chain(session, 2)[-1]
    inserted, release = threading.Event(), threading.Event()
    made, errors = {}, []

    def child(name: str, hold: bool) -> None:
        try:
            with transaction.atomic():
                made[name] = Run.objects.create(session=session, parent_run=parent, depth=parent.depth + 1,
                                                model="fake-model", status=RunStatus.SUCCEEDED)
                if hold:
                    inserted.set()
                    release.wait(10)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=child, args=("first", True))
    first.start()
    assert inserted.wait(10)
    second = threading.Thread(target=child, args=("second", False))
    second.start()
    second.join(0.5)  # PostgreSQL: blocked on the unique index; SQLite: waiting for the write lock
    release.set()
    first.join(10)
    second.join(10)
    assert not errors, errors
    assert made["first"].segment == parent.segment and made["second"].segment == made["second"].pk
    assert_segments_are_chains()
    assert assert_paths_match_the_cte() == 4


# --- the data migration --------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_runs_their_segments():
    """Runs written before the segment column (a random forest, children out of insertion order)
    get segments where each run's oldest child continues its segment; paths then match the CTE."""
    from django.db.migrations.executor import MigrationExecutor  # only this test migrates

    before = [("conversations", "0004_run_requeued_at_run_requeues")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    user = old.get_model("auth", "User").objects.create(username="before-segments")
    rng, now, runs = random.Random(11), timezone.now(), []
    for s in range(3):
        session = old.get_model("conversations", "Session").objects.create(owner_id=user.pk, title=f"s{s}")
        for i in range(40):
            parent = rng.choice(runs[-i:]) if i and rng.random() < 0.95 else None
            runs.append(old.get_model("conversations", "Run")(
                id=uuid.uuid4(), session_id=session.pk, parent_run_id=parent.pk if parent else None,
                depth=parent.depth + 1 if parent else 0, model="m", status="succeeded",
                created_at=now - timedelta(seconds=rng.randrange(10_000))))
    old.get_model("conversations", "Run").objects.bulk_create(runs)
    old.get_model("conversations", "Message").objects.bulk_create([
        old.get_model("conversations", "Message")(run_id=r.pk, position=p, role=role, content=f"{r.pk} {role}")
        for r in runs for p, role in enumerate(("user", "assistant"))])

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    with connection.cursor() as cursor:
        constraint = connection.introspection.get_constraints(cursor, Run._meta.db_table)["run_segment_depth"]
        on_messages = connection.introspection.get_constraints(cursor, Message._meta.db_table)
    assert constraint["unique"] and constraint["columns"][:2] == ["segment", "depth"]
    by_run_only = {name for name, c in on_messages.items() if c["index"] and c["columns"] == ["run_id"]}
    assert by_run_only == ({"message_run_hash"} if connection.vendor == "postgresql" else set())
    assert_segments_are_chains()
    assert assert_paths_match_the_cte() == 120
    migrated = {r.pk: r for r in Run.objects.all()}
    for parent in migrated.values():
        children = sorted((r for r in migrated.values() if r.parent_run_id == parent.pk),
                          key=lambda r: (r.created_at, str(r.pk)))
        firsts = [c.segment == parent.segment for c in children]
        assert firsts == [True, *[False] * (len(children) - 1)][:len(children)]
