"""Sessions, runs, messages and steps.

Runs form the conversation tree (each run has a parent run); steps form each run's call tree.
A fork is a new session whose first runs hang under a run of another session: ancestors are never
copied, because a finished run is immutable, so they are shared by every session that descends from
them. Appending a turn writes a constant number of rows whatever the depth.

Reading a path uses *segments*: every run stores ``segment``, the id of the first run of the chain
it belongs to. A run continues its parent's segment when it is the parent's first child in that
segment (nothing at ``(parent's segment, depth)`` yet), else it starts a segment of its own, whose
head's parent lies in the parent's segment. So the runs of a segment are a chain, one per depth
(unique ``(segment, depth)``), and the path to a run is: its segment up to its depth, then the
head's parent's segment up to that parent's depth, and so on to a root. A linear conversation is
one segment; each branch taken (a sibling, an edit, a regenerate, a rewind) starts one more. The
read is one query (SQLite and PostgreSQL): a short recursive walk over segment heads (two primary
key lookups per segment) and one index range scan on ``(segment, depth)`` per segment, instead of
one lookup per run. Unlike a materialised path (an array of every ancestor on each run, or
PostgreSQL's ``ltree``), a segment costs one id per run (16 bytes) whatever the depth.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from functools import partial
from operator import itemgetter
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, connections, models, router, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from core.fields import PREFIX as ENCRYPTED_PREFIX
from core.fields import EncryptedTextField
from core.messages import openai_message


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class SessionQuerySet(models.QuerySet):
    def alive(self) -> SessionQuerySet:
        return self.filter(deleted_at__isnull=True)

    def owned_by(self, user) -> SessionQuerySet:
        return self.filter(owner=user)


class Session(models.Model):
    """A conversation: a tree of runs the owner explores, and the leaf they look at (``active_run``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="arbor_sessions")
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Neither updated_at nor active_run is indexed: both change on every turn, and an UPDATE that
    # changes no indexed column is a HOT update (no new index entries, the old version pruned in
    # place). The sidebar reads an owner's sessions by the owner's index and sorts them.
    updated_at = models.DateTimeField(default=timezone.now)
    active_run = models.ForeignKey(
        "Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False,
        help_text="The leaf the owner is looking at; kept across reloads and devices.",
    )
    forked_from_run = models.ForeignKey(
        "Run", null=True, blank=True, on_delete=models.PROTECT, related_name="forks",
        help_text="Set on a fork: the run of another session this session continues from.",
    )
    deleted_at = models.DateTimeField(null=True, blank=True)
    pinned_at = models.DateTimeField(null=True, blank=True, help_text="Pinned to the top of the sidebar since.")
    default_agent = models.ForeignKey(
        "memory.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The agent that answers when the chat box names none.",
    )

    objects = SessionQuerySet.as_manager()

    def __str__(self) -> str:
        return self.title or f"Session {self.pk}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def visible_runs(self) -> RunQuerySet:
        """Every run of this session's tree: its own runs but pruned ones and, for a fork, the shared
        ancestors (even when pruned in their own session: like a deleted source, that never breaks a fork)."""
        own = Q_session(self) & models.Q(pruned_by__isnull=True)  # a pruned subtree is gone from its own tree
        if self.forked_from_run_id is None:
            return Run.objects.filter(own)
        return Run.objects.filter(own | models.Q(pk__in=_ancestor_ids_sql(self.forked_from_run_id, inclusive=True)))

    def can_branch_from(self, run: Run) -> bool:
        """A run may be the parent of a new run of this session if it is in this session's tree (an own
        run that is pruned is not)."""
        if run.session_id == self.pk:
            return run.pruned_by_id is None
        if self.forked_from_run_id is None:
            return False
        return Run.objects.ancestor_of(self.forked_from_run_id, inclusive=True).filter(pk=run.pk).exists()


def Q_session(session: Session) -> models.Q:  # reads like a Q object
    return models.Q(session_id=session.pk)


def db_uuid(value) -> str | uuid.UUID:
    """A UUID as the database stores it (hex without dashes on SQLite, native on PostgreSQL)."""
    return Run._meta.pk.get_db_prep_value(uuid.UUID(str(value)), connection)


def _segment_tails_cte() -> str:
    """A recursive CTE ``tails(id)``: the run with id ``%s``, then the parent of the head of its
    segment, then the parent of the head of that run's segment, ... up to a root (a last NULL row).

    Each step is two scalar subqueries on the primary key (the run's segment, the head's parent), so
    both SQLite and PostgreSQL walk it with index lookups (a join in the recursive term lets
    PostgreSQL's planner pick a hash join over the whole table at every level). Rows: the number of
    segments on the path, plus one.
    """
    table = Run._meta.db_table
    return (
        f"WITH RECURSIVE tails(id) AS ("
        f" SELECT id FROM {table} WHERE id = %s"
        f" UNION ALL"
        f" SELECT (SELECT h.parent_run_id FROM {table} h"
        f" WHERE h.id = (SELECT c.segment FROM {table} c WHERE c.id = t.id))"
        f" FROM tails t WHERE t.id IS NOT NULL"
        f")"
    )


class _PathRuns(NamedTuple):
    """SQL naming the runs on a path ``p`` (with ``p.id``), the expression of their depth, and the
    expression to order them by (root first)."""

    from_sql: str
    depth: str
    order: str


def _path_runs_sql(vendor: str) -> _PathRuns:
    """The runs on the path to ``%s`` (after :func:`_segment_tails_cte`): for each segment tail
    ``c``, the runs of its segment at or above its depth, one index range scan on ``(segment, depth)``.

    PostgreSQL gets their ids as one array, ordered root first (computed once, as an InitPlan), then
    unnested ``WITH ORDINALITY``: its planner estimates a range scan at (rows ÷ distinct segments)
    rows, ~300 on a table of 1,000 chains, and with ~100 estimated tails would join the whole run or
    message table by hash; ``unnest`` of an array is estimated at a few rows, so every join stays an
    index lookup, and its ordinality is known to be sorted (an ``ORDER BY`` on it only sorts each
    run's messages). A path has one run per depth from 0, so the ordinality is the depth + 1.
    """
    table = Run._meta.db_table
    runs = f" FROM tails t JOIN {table} c ON c.id = t.id JOIN {table} p ON p.segment = c.segment AND p.depth <= c.depth"
    if vendor != "postgresql":
        return _PathRuns(runs, "p.depth", "p.depth")
    return _PathRuns(f" FROM unnest(ARRAY(SELECT p.id{runs} ORDER BY p.depth)) WITH ORDINALITY AS p(id, n)",
                     "p.n - 1", "p.n")


def _ancestor_ids_sql(run_id, *, inclusive: bool, using: str | None = None) -> RawSQL:
    """Ids of a run's ancestors, root included: the segment walk (see the module doc). ``using``:
    the database alias it runs on (default: where runs are read)."""
    vendor = connections[using or router.db_for_read(Run)].vendor
    sql = (_segment_tails_cte() + " SELECT p.id" + _path_runs_sql(vendor).from_sql
           + ("" if inclusive else " WHERE p.id <> %s"))
    params = [db_uuid(run_id)] if inclusive else [db_uuid(run_id), db_uuid(run_id)]
    return RawSQL(sql, params)


def _descendant_ids_sql(run_id, *, inclusive: bool) -> RawSQL:
    """Ids of a run's descendants by one recursive CTE walking children down."""
    table = Run._meta.db_table
    sql = (
        f"WITH RECURSIVE sub(id) AS ("
        f" SELECT id FROM {table} WHERE id = %s"
        f" UNION ALL"
        f" SELECT r.id FROM {table} r JOIN sub s ON r.parent_run_id = s.id"
        f") SELECT id FROM sub" + ("" if inclusive else " WHERE id <> %s")
    )
    params = [db_uuid(run_id)] if inclusive else [db_uuid(run_id), db_uuid(run_id)]
    return RawSQL(sql, params)


def _pk(run_or_id):
    return getattr(run_or_id, "pk", run_or_id)


def plan_segments(runs: Iterable[tuple]) -> Iterator[tuple]:
    """``(id, segment)`` for new runs given as ``(id, parent_run_id, depth)`` sorted by depth.

    A run continues the segment of a parent *given earlier in ``runs``* when it is that parent's
    first child here; every other run (a root, a later sibling, a run whose parent is not in
    ``runs``) heads a segment of its own (its id). Starting a segment is always correct; continuing
    one only saves a step of the path read. Keeps two depth levels in memory. Raises ValueError
    when ``runs`` is not sorted by depth.
    """
    level, previous, current, continued = None, {}, {}, set()
    for run_id, parent_id, depth in runs:
        if depth != level:
            if level is not None and depth < level:
                raise ValueError("plan_segments needs runs sorted by depth")
            previous = current if level is not None and depth == level + 1 else {}
            current, continued, level = {}, set(), depth
        if parent_id is not None and parent_id in previous and parent_id not in continued:
            continued.add(parent_id)
            segment = previous[parent_id]
        else:
            segment = run_id
        current[run_id] = segment
        yield run_id, segment


class RunQuerySet(models.QuerySet):
    """Tree reads, chainable and named like Wagtail's page queries (``ancestor_of``, ...).

    Costs: ``ancestor_of`` walks segments (two primary key lookups per segment on the path, then
    one index range scan per segment), ``descendant_of`` one recursive join per level below the
    run, ``children_of``/``sibling_of`` one index lookup (``run_parent_created``).
    """

    def ancestor_of(self, run, *, inclusive: bool = False) -> RunQuerySet:
        """Runs on the path from the root to ``run`` (a Run or its id); ``inclusive`` adds ``run``."""
        return self.filter(pk__in=_ancestor_ids_sql(_pk(run), inclusive=inclusive, using=self.db))

    def descendant_of(self, run, *, inclusive: bool = False) -> RunQuerySet:
        """Runs below ``run`` (a Run or its id), in every session; ``inclusive`` adds ``run``."""
        return self.filter(pk__in=_descendant_ids_sql(_pk(run), inclusive=inclusive))

    def children_of(self, run) -> RunQuerySet:
        return self.filter(parent_run_id=_pk(run))

    def sibling_of(self, run: Run, *, inclusive: bool = True) -> RunQuerySet:
        """Runs sharing ``run``'s parent (roots of the same session count as siblings)."""
        if run.parent_run_id is None:
            qs = self.filter(parent_run__isnull=True, session_id=run.session_id)
        else:
            qs = self.filter(parent_run_id=run.parent_run_id)
        return qs if inclusive else qs.exclude(pk=run.pk)

    def active(self) -> RunQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def finished(self) -> RunQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)

    def unpruned(self) -> RunQuerySet:
        """Runs not pruned from their session's tree (see :class:`Prune`)."""
        return self.filter(pruned_by__isnull=True)
    def bulk_create(self, objs, *args, **kwargs):
        """``QuerySet.bulk_create`` that first gives each run without a ``segment`` one, with
        :func:`plan_segments` over those runs: a run continues its parent's segment when the parent
        is one of them and this is its first child there; otherwise it starts one. No extra query."""
        objs = list(objs)
        todo = sorted((r for r in objs if r.segment is None), key=lambda r: r.depth)
        for run, (_, segment) in zip(todo, plan_segments((r.pk, r.parent_run_id, r.depth) for r in todo), strict=True):
            run.segment = segment
        return super().bulk_create(objs, *args, **kwargs)


class Run(models.Model):
    """One turn: a user input and the model's answer. ``id`` is the run_id (a UUID)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed through run_session_created and run_parent_created (their first column), not alone.
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="runs", db_index=False)
    parent_run = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children",
                                   db_index=False)
    depth = models.PositiveIntegerField(default=0, help_text="0 for a root run; parent's depth + 1 otherwise.")
    segment = models.UUIDField(
        editable=False,
        help_text="Id of the first run of this run's segment (its parent's segment for a first child, "
                  "else its own id); written once on insert, read by path reads.",
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    model = models.CharField(max_length=200)
    params = models.JSONField(default=dict, blank=True)
    agent = models.ForeignKey("memory.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    connection = models.ForeignKey(
        "connections.Connection", null=True, blank=True, on_delete=models.RESTRICT, related_name="runs",
        help_text="The model connection the run is sent to (copied from its agent at the start); empty: the default.",
    )
    memory_id = models.CharField(
        max_length=100, default="default",
        help_text="The memory id of the agent that answered (copied: history must not change if the agent does).",
    )
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_counted = models.BooleanField(
        default=False, help_text="True when the endpoint reported no usage and Arbor counted the tokens itself.",
    )
    finish_reason = models.CharField(max_length=32, blank=True)
    continues_answer = models.BooleanField(
        default=False, help_text="Asks the model to continue its parent run's answer, cut at max_tokens "
                                 "(\"Continue generating\"): the chat shows both as one turn.",
    )
    rating = models.SmallIntegerField(
        null=True, blank=True, help_text="The owner's thumbs on the answer: 1 up, -1 down, empty when not rated "
                                         "(for comparison statistics).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    requeued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the reaper last sent this run to the queue again.",
    )
    requeues = models.PositiveSmallIntegerField(default=0, help_text="How often the reaper sent it again.")
    error_type = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    pruned_by = models.ForeignKey(
        "Prune", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs",
        help_text="Set while the run is pruned from its session's tree (soft delete; see conversations.branches).",
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        # Every index is written again by each UPDATE that changes an indexed column (the claim and
        # the final state change ``status``), so runs keep only those their reads use: children and
        # a session's runs (below); the path read's (segment, depth); the queued and running runs
        # the reaper and the workers look for (a partial index: finished runs are not in it); the
        # foreign keys others delete through (agent, connection, prune). ``memory_id`` is read
        # only with a run's path, never alone.
        indexes = [
            models.Index(fields=["parent_run", "created_at"], name="run_parent_created"),
            models.Index(fields=["session", "created_at"], name="run_session_created"),
            models.Index(fields=["status"], name="run_active", condition=models.Q(status__in=["queued", "running"])),
        ]
        constraints = [
            # One run per depth in a segment: what makes a segment a chain; the path read's range scan.
            models.UniqueConstraint(fields=["segment", "depth"], name="run_segment_depth"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.status})"

    def save(self, **kwargs):
        """``Model.save``; a new run without a ``segment`` gets one first (see the module doc).

        With a parent, the insert tries the parent's segment inside a savepoint (SAVEPOINT, INSERT,
        RELEASE); when that depth of the segment is taken (a sibling came first, even concurrently:
        the unique ``(segment, depth)`` decides), the run heads a new segment (a second INSERT).
        Reads the parent's segment only when the parent instance is not at hand (one query).
        """
        if not self._state.adding or self.segment is not None:
            return super().save(**kwargs)
        using = kwargs.get("using") or router.db_for_write(Run, instance=self)
        parent_segment = self._parent_segment(using)
        if parent_segment is not None:
            self.segment = parent_segment
            try:
                with transaction.atomic(using=using):
                    return super().save(**kwargs)
            except IntegrityError:
                if not Run.objects.using(using).filter(segment=parent_segment, depth=self.depth).exists():
                    raise
        self.segment = self.pk
        return super().save(**kwargs)

    def _parent_segment(self, using: str):
        """The parent run's segment, or None for a root."""
        if self.parent_run_id is None:
            return None
        if Run._meta.get_field("parent_run").is_cached(self) and self.parent_run.pk == self.parent_run_id:
            return self.parent_run.segment
        return Run.objects.using(using).filter(pk=self.parent_run_id).values_list("segment", flat=True).first()

    @property
    def run_id(self) -> uuid.UUID:
        return self.pk

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def model_label(self) -> str:
        """``connection · model``, as the chat shows the model (the default connection when none is set)."""
        return f"{self.connection.name if self.connection_id is not None else 'Default'} · {self.model}"

    @property
    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    @property
    def error(self) -> dict | None:
        if not self.error_type and not self.error_message:
            return None
        return {"type": self.error_type, "message": self.error_message}

    def latency_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def time_to_first_token_seconds(self) -> float | None:
        if self.started_at and self.first_token_at:
            return (self.first_token_at - self.started_at).total_seconds()
        return None


class Role(models.TextChoices):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class PathRun(NamedTuple):
    pk: uuid.UUID
    depth: int


class PathMessage(tuple):
    """A message on a path, read without building model instances (see ``Message.objects.path``).

    Same attributes as :class:`Message` for what context building needs, plus ``depth`` (its run's
    depth) and ``run`` (``PathRun(pk, depth)``). Read-only: a tuple of the row as the database sent
    it (``_PATH_SELECT`` order), so building one costs no Python call per field; ``metadata`` is
    ``{}`` when the row's is empty (a new dict on each read of it).
    """

    __slots__ = ()

    pk = id = property(itemgetter(0))
    run_id = property(itemgetter(1))
    depth = property(itemgetter(2))
    position = property(itemgetter(3))
    role = property(itemgetter(4))
    content = property(itemgetter(5))
    name = property(itemgetter(6))
    tool_calls = property(itemgetter(7))
    tool_call_id = property(itemgetter(8))
    token_count = property(itemgetter(10))

    @property
    def metadata(self) -> dict:
        return self[9] if self[9] is not None else {}

    @property
    def run(self) -> PathRun:
        return PathRun(self[1], self[2])

    def as_openai(self) -> dict:
        return openai_message(self)

    def __repr__(self) -> str:
        return f"PathMessage(pk={self[0]}, run_id={self[1]}, depth={self[2]}, position={self[3]}, role={self[4]!r})"


# The columns of a PathMessage, in its order (``m``: message, ``p``: its run). An empty metadata
# object comes as NULL, so that nearly every row needs no conversion at all.
_PATH_SELECT = ("m.id, m.run_id, {depth}, m.position, m.role, m.content, m.name, m.tool_calls, m.tool_call_id,"
                " NULLIF(m.metadata, '{{}}'), m.token_count")


def _with_uuid_run_ids(rows: list[tuple]) -> list[tuple]:
    """``rows`` with their run ids (hex text) as UUIDs, each run's converted once."""
    to_python, seen = Run._meta.pk.to_python, {}
    return [(row[0], seen.get(row[1]) or seen.setdefault(row[1], to_python(row[1])), *row[2:]) for row in rows]


def _path_row_converter(conn):
    """A function turning one raw path row into PathMessage values, through the fields' own
    converters (content, tool calls, metadata)."""
    fields = Message._meta
    content = fields.get_field("content").from_db_value
    tool_calls = fields.get_field("tool_calls").from_db_value
    metadata = fields.get_field("metadata").from_db_value

    def convert(row: tuple) -> tuple:
        values = list(row)
        values[5] = content(row[5], None, conn)
        values[7] = tool_calls(row[7], None, conn)
        values[9] = (metadata(row[9], None, conn) or None) if row[9] is not None else None
        return tuple(values)

    return convert


class MessageQuerySet(models.QuerySet):
    def path(self, run, *, inclusive: bool = True) -> list[PathMessage]:
        """Messages from the root to ``run`` (a Run or its id) in conversation order, as
        :class:`PathMessage` (no model instances). ``inclusive=False`` leaves out ``run``'s own
        messages.

        One query at any depth: the segment walk of :class:`RunQuerySet` (two primary key lookups
        per segment on the path), one index range scan of ``(segment, depth)`` per segment and one
        message index lookup per run (PostgreSQL: a hash index, two buffers a run). Rows become
        tuples as they are; only those with tool calls, metadata or encrypted text pass through the
        fields' converters (on SQLite, run ids come as text and become UUIDs first, once per run).
        """
        table, runs = Message._meta.db_table, _path_runs_sql(connections[self.db].vendor)
        sql = (
            _segment_tails_cte() + " SELECT " + _PATH_SELECT.format(depth=runs.depth) + runs.from_sql
            + f" JOIN {table} m ON m.run_id = p.id" + ("" if inclusive else " WHERE p.id <> %s")
            + f" ORDER BY {runs.order}, m.position"
        )
        params = [db_uuid(_pk(run))] if inclusive else [db_uuid(_pk(run)), db_uuid(_pk(run))]
        conn = connections[self.db]
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if rows and not isinstance(rows[0][1], uuid.UUID):  # SQLite: run ids come as hex text
            rows = _with_uuid_run_ids(rows)
        make, convert = partial(tuple.__new__, PathMessage), _path_row_converter(conn)
        return [
            make(convert(row) if row[7] is not None or row[9] is not None or row[5].startswith(ENCRYPTED_PREFIX)
                 else row)
            for row in rows
        ]

    def on_path_to(self, run, *, inclusive: bool = True) -> MessageQuerySet:
        """Messages of every run from the root to ``run``, in conversation order, in one query."""
        return (
            self.filter(run_id__in=_ancestor_ids_sql(_pk(run), inclusive=inclusive, using=self.db))
            .select_related("run")
            .order_by("run__depth", "position")
        )


class Message(models.Model):
    """A message of a run, in order (``position``): the user input, tool traffic, the answer."""

    # No index of its own: message_run_position (run, position) serves lookups by run, and on
    # PostgreSQL the hash index message_run_hash (migration 0005) serves the path read's probes.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="messages", db_index=False)
    position = models.PositiveSmallIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    content = EncryptedTextField(blank=True)  # plain text unless ARBOR_MEMORY_ENCRYPTION_KEYS is set
    name = models.CharField(max_length=100, blank=True)
    tool_calls = models.JSONField(null=True, blank=True)
    tool_call_id = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    token_count = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = MessageQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="message_run_position")]
        ordering = ["run_id", "position"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    def as_openai(self) -> dict:
        """The message in the OpenAI chat format (``{"role", "content", ...}``)."""
        return openai_message(self)


class StepKind(models.TextChoices):
    CONTEXT = "context", "context build"
    LLM_CALL = "llm_call", "model call"
    TOOL_CALL = "tool_call", "tool call"
    COMPACTION = "compaction", "compaction"
    AGENT_CALL = "agent_call", "nested agent call"


class Step(models.Model):
    """One node of a run's trace: context build, model call, tool call, compaction, nested agent."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    parent_step = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    kind = models.CharField(max_length=16, choices=StepKind.choices)
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    request = models.JSONField(default=dict, blank=True, help_text="What was sent, API keys masked.")
    response = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "started_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name}".strip()

    def duration_seconds(self) -> float | None:
        if self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


# --- branch tools: named branches, prune, shared links (actions and reads in the branches app) -----

MAX_LABELS = 200  # labels per session


class BranchLabelQuerySet(models.QuerySet):
    def visible(self):
        """Labels whose run is in their session's tree: an own run that is pruned hides its labels
        (until an undo); a fork's shared run always counts."""
        return self.filter(models.Q(run__pruned_by__isnull=True) | ~models.Q(run__session_id=models.F("session_id")))


class BranchLabel(models.Model):
    """A name a session's owner gives a run ("draft B"): a bookmark of the branch through it.

    Labels belong to a session: a fork copies the labels on its shared ancestors when it is made
    and from then on its labels are its own (renaming one never renames the other's)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="branch_labels")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="branch_labels")
    name = models.CharField(max_length=60)
    created_at = models.DateTimeField(default=timezone.now)

    objects = BranchLabelQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "name"], name="branchlabel_session_name")]
        ordering = ["created_at", "name"]

    def __str__(self) -> str:
        return self.name


class Prune(models.Model):
    """A subtree cut from a session's tree: its own runs at and below ``run`` get ``pruned_by``.

    A soft delete like a session's: the owner may undo it for ``ARBOR_UNDO_DELETE_SECONDS``, then
    it stays hidden. Runs of other sessions below (a fork's) are never touched, and a fork whose
    shared ancestors were pruned keeps reading them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="prunes")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", help_text="The root of the subtree.")
    run_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    active_before = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The session's active run when the prune moved it away (given back on undo).",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Prune of {self.run_count} run(s) below {self.run_id}"


class BranchShare(models.Model):
    """A read-only link to one branch: the path from the root to ``run``, nothing else.

    The link carries a token signed with the site's key (:func:`branches.selectors.share_token`); the row
    makes it revocable and lets it expire."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="branch_shares")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", help_text="The last turn shown.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Share of the branch to {self.run_id}"

    def is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
