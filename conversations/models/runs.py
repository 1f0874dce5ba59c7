"""Runs and their tree: statuses, segments and the path reads' SQL, ``Run``.

See :mod:`conversations.models` for segments (how a path is read in one query).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from django.db import IntegrityError, connection, connections, models, router, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


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
    session = models.ForeignKey("Session", on_delete=models.PROTECT, related_name="runs", db_index=False)
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
        # Every index gets a new entry from each UPDATE that changes a column it covers (or its
        # condition reads); an UPDATE that changes none is HOT. So runs keep only the indexes their
        # reads use: children and a session's runs (below); the path read's (segment, depth); the
        # unfinished runs the reaper looks for (``run_unfinished``: the claim changes only
        # unindexed columns, so only the final state's UPDATE, which sets ``finished_at``, writes
        # index entries); the foreign keys others delete through (agent, connection, prune).
        # ``status`` and ``memory_id`` are read only with a run's id, path or parent, never alone.
        indexes = [
            models.Index(fields=["parent_run", "created_at"], name="run_parent_created"),
            models.Index(fields=["session", "created_at"], name="run_session_created"),
            models.Index(fields=["created_at"], name="run_unfinished", condition=models.Q(finished_at__isnull=True)),
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
