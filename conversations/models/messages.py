"""Messages (a run's input, tool traffic and answer; the path read that returns them) and steps
(a run's trace)."""

from __future__ import annotations

import uuid
from functools import partial
from operator import itemgetter
from typing import NamedTuple

from django.db import connections, models
from django.utils import timezone

from core.fields import PREFIX as ENCRYPTED_PREFIX
from core.fields import EncryptedTextField, PackedJSONField
from core.messages import openai_message

from .runs import Run, RunStatus, _ancestor_ids_sql, _path_runs_sql, _pk, _segment_tails_cte, db_uuid


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


def _path_filter(depth: str, run, *, inclusive: bool, from_depth: int, runs) -> tuple[str, list]:
    """The ``WHERE`` of :meth:`MessageQuerySet.path` on the path's runs ``p`` (``depth``: the SQL of
    their depth) and the statement's parameters (the run's id first, for the segment walk)."""
    params, clauses = [db_uuid(_pk(run))], []
    if not inclusive:
        clauses.append("p.id <> %s")
        params.append(db_uuid(_pk(run)))
    if from_depth > 0:
        also = [db_uuid(r) for r in runs]
        clauses.append(f"({depth} >= %s" + (f" OR p.id IN ({', '.join(['%s'] * len(also))}))" if also else ")"))
        params += [int(from_depth), *also]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


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
    def path(self, run, *, inclusive: bool = True, from_depth: int = 0, runs=()) -> list[PathMessage]:
        """Messages from the root to ``run`` (a Run or its id) in conversation order, as
        :class:`PathMessage` (no model instances). ``inclusive=False`` leaves out ``run``'s own
        messages. ``from_depth``: only the runs at this depth or deeper, plus the runs whose ids are
        in ``runs`` (the path is still walked from the root; the messages of the runs left out are
        not read: what a context after a compaction needs).

        One query at any depth: the segment walk of :class:`RunQuerySet` (two primary key lookups
        per segment on the path), one index range scan of ``(segment, depth)`` per segment and one
        message index lookup per run (PostgreSQL: a hash index, two buffers a run). Rows become
        tuples as they are; only those with tool calls, metadata or encrypted text pass through the
        fields' converters (on SQLite, run ids come as text and become UUIDs first, once per run).
        """
        conn = connections[self.db]
        table, on_path = Message._meta.db_table, _path_runs_sql(conn.vendor)
        where, params = _path_filter(on_path.depth, run, inclusive=inclusive, from_depth=from_depth, runs=runs)
        sql = (
            _segment_tails_cte() + " SELECT " + _PATH_SELECT.format(depth=on_path.depth) + on_path.from_sql
            + f" JOIN {table} m ON m.run_id = p.id" + where + f" ORDER BY {on_path.order}, m.position"
        )
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

    def matching(self, query: str, *, ranked: bool = False) -> MessageQuerySet:
        """The messages whose text matches ``query`` (web search syntax: words, "a phrase", -word,
        or), by PostgreSQL full-text search on the expression of the GIN index
        ``message_content_fts`` (migration 0002: ``to_tsvector('english', COALESCE(content, ''))``),
        so the index finds them. ``ranked``: each also gets ``rank`` (``ts_rank``, > 0), which parses
        each match's text again (22–29 s for a word in 8 % of 2,000,000 messages; a filter on the
        rank alone, without the match, parsed every message: 67–147 s). PostgreSQL only."""
        # PostgreSQL only (needs psycopg): imported where it is used
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        search = SearchQuery(query, config="english", search_type="websearch")
        vector = SearchVector("content", config="english")
        found = self.alias(matched=vector).filter(matched=search)
        return found.annotate(rank=SearchRank(vector, search)).filter(rank__gt=0) if ranked else found

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
    # Compressed (written on every turn, read whole): see core.fields.PackedJSONField.
    request = PackedJSONField(default=dict, blank=True, help_text="What was sent, API keys masked.")
    response = PackedJSONField(default=dict, blank=True)
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
