"""Sessions, runs, messages and steps.

Runs form the conversation tree (each run has a parent run); steps form each run's call tree.
A fork is a new session whose first runs hang under a run of another session: ancestors are never
copied, because a finished run is immutable, so they are shared by every session that descends from
them. Reading a path is one recursive CTE (SQLite and PostgreSQL both have ``WITH RECURSIVE``);
appending a turn writes a constant number of rows whatever the depth.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings
from django.db import connection, connections, models
from django.db.models.expressions import RawSQL
from django.utils import timezone

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
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    active_run = models.ForeignKey(
        "Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The leaf the owner is looking at; kept across reloads and devices.",
    )
    forked_from_run = models.ForeignKey(
        "Run", null=True, blank=True, on_delete=models.PROTECT, related_name="forks",
        help_text="Set on a fork: the run of another session this session continues from.",
    )
    deleted_at = models.DateTimeField(null=True, blank=True)
    default_agent = models.ForeignKey(
        "memory.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The agent that answers when the chat box names none.",
    )

    objects = SessionQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["owner", "-updated_at"], name="session_owner_updated")]

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


def Q_session(session: Session) -> models.Q:  # noqa: N802 - reads like a Q object
    return models.Q(session_id=session.pk)


def db_uuid(value) -> str | uuid.UUID:
    """A UUID as the database stores it (hex without dashes on SQLite, native on PostgreSQL)."""
    return Run._meta.pk.get_db_prep_value(uuid.UUID(str(value)), connection)


def _path_cte() -> str:
    """A recursive CTE ``path(id, depth)``: the run with id ``%s`` and its ancestors to the root.

    Each step is a scalar subquery on the primary key, so both SQLite and PostgreSQL walk it with
    one index lookup per level (a join in the recursive term lets PostgreSQL's planner pick a hash
    join over the whole table at every level — quadratic on a freshly filled table). The walk stops
    at depth 0, the root; ``depth`` is written once when a run is created and never changes.
    """
    table = Run._meta.db_table
    return (
        f"WITH RECURSIVE path(id, depth) AS ("
        f" SELECT id, depth FROM {table} WHERE id = %s"
        f" UNION ALL"
        f" SELECT (SELECT r.parent_run_id FROM {table} r WHERE r.id = p.id), p.depth - 1 FROM path p WHERE p.depth > 0"
        f")"
    )


def _ancestor_ids_sql(run_id, *, inclusive: bool) -> RawSQL:
    """Ids of a run's ancestors, root included, by one recursive CTE walking ``parent_run_id`` up."""
    sql = _path_cte() + " SELECT id FROM path" + ("" if inclusive else " WHERE id <> %s")
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


class RunQuerySet(models.QuerySet):
    """Tree reads, chainable and named like Wagtail's page queries (``ancestor_of``, ...)."""

    def ancestor_of(self, run, *, inclusive: bool = False) -> RunQuerySet:
        """Runs on the path from the root to ``run`` (a Run or its id); ``inclusive`` adds ``run``."""
        return self.filter(pk__in=_ancestor_ids_sql(_pk(run), inclusive=inclusive))

    def descendant_of(self, run, *, inclusive: bool = False) -> RunQuerySet:
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


class Run(models.Model):
    """One turn: a user input and the model's answer. ``id`` is the run_id (a UUID)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="runs")
    parent_run = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    depth = models.PositiveIntegerField(default=0, help_text="0 for a root run; parent's depth + 1 otherwise.")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    model = models.CharField(max_length=200)
    params = models.JSONField(default=dict, blank=True)
    agent = models.ForeignKey("memory.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    connection = models.ForeignKey(
        "connections.Connection", null=True, blank=True, on_delete=models.RESTRICT, related_name="runs",
        help_text="The model connection the run is sent to (copied from its agent at the start); empty: the default.",
    )
    memory_id = models.CharField(
        max_length=100, default="default", db_index=True,
        help_text="The memory id of the agent that answered (copied: history must not change if the agent does).",
    )
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_counted = models.BooleanField(
        default=False, help_text="True when the endpoint reported no usage and Arbor counted the tokens itself.",
    )
    finish_reason = models.CharField(max_length=32, blank=True)
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
        indexes = [
            models.Index(fields=["parent_run", "created_at"], name="run_parent_created"),
            models.Index(fields=["session", "created_at"], name="run_session_created"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.status})"

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


@dataclass(slots=True)
class PathMessage:
    """A message on a path, read without building model instances (see ``Message.objects.path``).

    Same attributes as :class:`Message` for what context building needs, plus ``depth``
    (its run's depth) and ``run`` (``PathRun(pk, depth)``).
    """

    pk: int
    run_id: uuid.UUID
    depth: int
    position: int
    role: str
    content: str
    name: str
    tool_calls: list | None
    tool_call_id: str
    metadata: dict
    token_count: int | None

    @property
    def id(self) -> int:
        return self.pk

    @property
    def run(self) -> PathRun:
        return PathRun(self.run_id, self.depth)

    def as_openai(self) -> dict:
        return openai_message(self)


_PATH_COLUMNS = ("id", "run_id", "position", "role", "content", "name", "tool_calls", "tool_call_id", "metadata",
                 "token_count")


def _fast_json(convert):
    """JSONField.from_db_value without a json.loads for the values nearly every row has."""

    def fast(value, expression, connection):
        if value is None:
            return None
        if value == "{}":
            return {}
        return convert(value, expression, connection)

    return fast


class MessageQuerySet(models.QuerySet):
    def path(self, run, *, inclusive: bool = True) -> list[PathMessage]:
        """Messages from the root to ``run`` (a Run or its id) in conversation order: one query at
        any depth, rows turned into :class:`PathMessage` (no model instances: ~10x faster at depth
        1,000). ``inclusive=False`` leaves out ``run``'s own messages."""
        table = Message._meta.db_table
        cols = ", ".join(f"m.{c}" for c in _PATH_COLUMNS)
        sql = (
            _path_cte() + f" SELECT {cols}, p.depth FROM {table} m JOIN path p ON m.run_id = p.id"
            + ("" if inclusive else " WHERE p.id <> %s") + " ORDER BY p.depth, m.position"
        )
        params = [db_uuid(_pk(run))] if inclusive else [db_uuid(_pk(run)), db_uuid(_pk(run))]
        fields = {f.column: f for f in Message._meta.concrete_fields}
        conn = connections[self.db]
        # Columns whose field converts database values (JSON, UUID on SQLite, encrypted text, ...).
        converters = [
            (
                i,
                _fast_json(fields[c].from_db_value) if isinstance(fields[c], models.JSONField)
                else fields[c].from_db_value,
            )
            for i, c in enumerate(_PATH_COLUMNS) if hasattr(fields[c], "from_db_value")
        ]
        run_field = Message._meta.get_field("run").target_field
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        out = []
        for row in rows:
            values = list(row)
            for i, convert in converters:
                values[i] = convert(values[i], None, conn)
            if not isinstance(values[1], uuid.UUID):
                values[1] = run_field.to_python(values[1])
            (pk, run_id, position, role, content, name, tool_calls, tool_call_id, metadata, token_count, depth) = values
            out.append(PathMessage(pk, run_id, depth, position, role, content, name, tool_calls, tool_call_id,
                                   metadata or {}, token_count))
        return out

    def on_path_to(self, run, *, inclusive: bool = True) -> MessageQuerySet:
        """Messages of every run from the root to ``run``, in conversation order, in one query."""
        return (
            self.filter(run_id__in=_ancestor_ids_sql(_pk(run), inclusive=inclusive))
            .select_related("run")
            .order_by("run__depth", "position")
        )


class Message(models.Model):
    """A message of a run, in order (``position``): the user input, tool traffic, the answer."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="messages")
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


class RunEvent(models.Model):
    """A run's stream event when streams live in the database (embedded mode, no Redis)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", db_index=False)
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=16)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="runevent_run_seq")]

    def __str__(self) -> str:
        return f"{self.type} #{self.seq}"


# --- branch tools (issue 13): named branches, prune, shared links ---------------------------------

class BranchLabel(models.Model):
    """A name a session's owner gives a run ("draft B"): a bookmark of the branch through it.

    Labels belong to a session: a fork copies the labels on its shared ancestors when it is made
    and from then on its labels are its own (renaming one never renames the other's)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="branch_labels")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="branch_labels")
    name = models.CharField(max_length=60)
    created_at = models.DateTimeField(default=timezone.now)

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

    The link carries a token signed with the site's key (:mod:`conversations.branches`); the row
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
