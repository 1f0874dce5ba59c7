"""Agents and their memory settings (the Timbal/TFrameX memory model, done per branch).

An **agent** is a named configuration: a model connection and one of its models, system prompt,
parameters, ``memory_id``, ``memory_window_size``, context budget, compaction policy and tools. Runs
answered by agents with the same ``memory_id`` share history on a branch; different ids are isolated. Behaviour lives in
:mod:`memory.policy` (budget and compaction policy, parsed) and the engine
(:mod:`engine.context` builds a run's context, :mod:`engine.compaction` compacts).
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from connections.models import Connection, ConnectionModel
from connections.selectors import connection_named
from core.errors import InvalidInput
from core.fields import EncryptedTextField
from core.params import clean_params

from .policy import parse_policy

DEFAULT_MEMORY_ID = "default"
MAX_TOOLS = 20
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class AgentQuerySet(models.QuerySet):
    def pickable_by(self, user) -> AgentQuerySet:
        """The agents ``user`` may pick for a run or a variant: their own and the shared ones, not
        the ones comparisons made for their variants; ordered by name."""
        return (self.filter(models.Q(owner=user) | models.Q(owner__isnull=True))
                .filter(made_by_comparison=False).select_related("connection").order_by("name", "pk"))


class Agent(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="agents",
        help_text="Empty for agents every user may pick.",
    )
    name = models.CharField(max_length=100)
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.RESTRICT, related_name="agents",
        help_text="The endpoint its runs go to; empty: the default connection (OPENAI_BASE_URL). A nested "
                  "agent without one answers on its caller's connection.",
    )
    model = models.CharField(max_length=200, blank=True,
                             help_text="One of the connection's models; empty: settings.ARBOR_MODEL.")
    system_prompt = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="temperature, top_p, max_tokens, seed, ...")
    memory_id = models.CharField(max_length=100, default=DEFAULT_MEMORY_ID, db_index=True)
    memory_window_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Newest N messages kept; 0 keeps none; empty keeps all (within the budget).",
    )
    context_window = models.PositiveIntegerField(
        null=True, blank=True, help_text="Tokens; empty: the configured window of the model, else the default.",
    )
    reserved_output_tokens = models.PositiveIntegerField(default=512)
    compaction = models.JSONField(default=dict, blank=True, help_text="Compaction policy (see memory.policy).")
    tools = models.JSONField(default=list, blank=True, help_text="Names of registry tools this agent may call.")
    made_by_comparison = models.BooleanField(
        default=False, help_text="Made by an A/B comparison for one of its variants (kept out of agent pickers).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = AgentQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="agent_owner_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def model_label(self) -> str:
        """``connection · model`` as pickers show it (the default connection when none is set)."""
        connection = self.connection.name if self.connection_id is not None else "Default"
        return f"{connection} · {self.model or settings.ARBOR_MODEL}"

    def clean(self) -> None:
        """Validate what the admin and the API accept (ValidationError naming the field): the
        compaction policy (and a connection it names), the parameters (:func:`core.params.clean_params`),
        the tools (a list of distinct tool names), the connection (live, the owner's own or shared;
        shared only for a shared agent) and the model (one of the connection's, when it has a list)."""
        errors: dict[str, list[str]] = {}
        try:
            policy = parse_policy(self.compaction)
            for strategy in policy.strategies:
                named = strategy.get("connection")
                if named and connection_named(self.owner_id, named) is None:
                    raise ValidationError(f"summarize connection {named!r} is not a connection this agent may use")
        except ValidationError as exc:
            errors["compaction"] = exc.messages
        try:
            clean_params(self.params)
        except InvalidInput as exc:
            errors["params"] = [exc.message]
        tools_error = _tools_error(self.tools)
        if tools_error:
            errors["tools"] = [tools_error]
        errors.update(self._connection_errors())
        if errors:
            raise ValidationError(errors)

    def _connection_errors(self) -> dict[str, list[str]]:
        if self.connection_id is None:
            return {}
        connection = Connection.objects.filter(pk=self.connection_id).first()
        if connection is None or connection.is_deleted:
            return {"connection": ["That connection does not exist (or was deleted)."]}
        if connection.owner_id is not None and connection.owner_id != self.owner_id:
            return {"connection": ["That connection belongs to another user."]}
        names = set(ConnectionModel.objects.filter(connection=connection).values_list("name", flat=True))
        if self.model and names and self.model not in names:
            return {"model": [f"{self.model!r} is not a model of the connection “{connection.name}” (refresh its "
                              "models or add it by hand on the Connections page)."]}
        return {}


def _tools_error(tools) -> str:
    if not isinstance(tools, list):
        return "tools must be a list of tool names"
    if len(tools) > MAX_TOOLS:
        return f"at most {MAX_TOOLS} tools"
    if not all(isinstance(t, str) and _TOOL_NAME.match(t) for t in tools):
        return "each tool is a name (letters, digits, _ and -, starting with a letter or _)"
    if len(set(tools)) != len(tools):
        return "a tool is listed twice"
    return ""


class CompactionStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    UNDONE = "undone"


class Compaction(models.Model):
    """One compaction of a branch's history for one memory id, attached to the run whose ancestors
    it covers (``run``): every descendant of ``run`` builds its context from it once it is
    ``ready``; a branch that leaves the path above ``run`` never sees it.

    What it does to the history (applied by :mod:`engine.context`):

    - ``from_depth``: messages of runs shallower than this are left out — covered by ``summary``
      when there is one, simply dropped otherwise (``keep_last_turns``);
    - ``replaced``: message id (str) → content sent instead (tool results truncated);
    - ``dropped``: message ids left out (tool results dropped).

    ``base`` is the earlier compaction on the same path this one built on (summaries are
    incremental: the new summary is made from the base summary and the messages after it).
    """

    run = models.ForeignKey("conversations.Run", on_delete=models.CASCADE, related_name="compactions")
    memory_id = models.CharField(max_length=100, default=DEFAULT_MEMORY_ID)
    status = models.CharField(max_length=16, choices=CompactionStatus.choices, default=CompactionStatus.PENDING,
                              db_index=True)
    base = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    policy = models.JSONField(default=dict, blank=True,
                              help_text="The policy applied (threshold, strategies in order).")
    applied = models.JSONField(default=list, blank=True,
                               help_text="The strategies that acted, in order, each with what it did.")
    from_depth = models.PositiveIntegerField(default=0)
    replaced = models.JSONField(default=dict, blank=True)
    dropped = models.JSONField(default=list, blank=True)
    replaced_message_ids = models.JSONField(
        default=list, blank=True, help_text="Every message this compaction stands for (summarised, cut, truncated).",
    )
    summary = EncryptedTextField(blank=True)  # plain text unless ARBOR_MEMORY_ENCRYPTION_KEYS is set
    model = models.CharField(max_length=200, blank=True, help_text="The model that wrote the summary.")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    usable_window = models.PositiveIntegerField(default=0, help_text="Tokens: context window − reserved output.")
    tokens_before = models.PositiveIntegerField(default=0)
    tokens_after = models.PositiveIntegerField(null=True, blank=True)
    utilisation_before = models.FloatField(default=0.0, help_text="Tokens of the next context ÷ usable window.")
    utilisation_after = models.FloatField(null=True, blank=True)
    step = models.ForeignKey("conversations.Step", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    versions = models.JSONField(
        default=list, blank=True,
        help_text="Earlier texts of the summary, oldest first: [{summary, replaced_at, by}] (an edit keeps the old).",
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", help_text="Who asked for it (Compact now); empty: automatic.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "memory_id"], name="compaction_run_memory")]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Compaction {self.pk} of run {self.run_id} ({self.status})"

    @property
    def is_ready(self) -> bool:
        return self.status == CompactionStatus.READY

    @property
    def first_turn(self) -> int:
        """Number of the first turn this compaction stands for (turn n is the run at depth n − 1)."""
        return 1

    @property
    def last_turn(self) -> int:
        """Number of the last turn it stands for: the turns before ``from_depth``."""
        return self.from_depth

    @property
    def summary_connection(self) -> str:
        """Name of the connection the summary was written on (from what the strategies recorded)."""
        return next((a.get("connection") or "" for a in reversed(self.applied or []) if a.get("type") == "summarize"),
                    "")

    @property
    def marker(self) -> str:
        """The chat's marker line: “Turns 1–40 summarised: 18,400 → 1,150 tokens · by connection ·
        model · when”; for a failed one, why (the raw turns are sent meanwhile)."""
        if self.status == CompactionStatus.FAILED:
            return f"Compaction failed: {self.error} · the raw turns are sent"
        if self.status in (CompactionStatus.PENDING, CompactionStatus.RUNNING):
            return "Compacting earlier turns…"
        turns = "Turn 1" if self.last_turn <= 1 else f"Turns 1–{self.last_turn}"
        verb = "summarised" if self.summary else "compacted"
        after = f"{self.tokens_after:,}" if self.tokens_after is not None else "?"
        by = " · ".join(x for x in (self.summary_connection, self.model) if x)
        when = timezone.localtime(self.finished_at).strftime("%Y-%m-%d %H:%M") if self.finished_at else ""
        text = f"{turns} {verb}: {self.tokens_before:,} → {after} tokens" + (f" · by {by}" if by else "") + \
            (f" · {when}" if when else "")
        return text + (" · undone: the raw turns are sent" if self.status == CompactionStatus.UNDONE else "")

    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class BranchSettings(models.Model):
    """Chat settings chosen in a session's settings panel, from a turn on: every run started below
    ``run`` (its descendants, on every branch from there) takes them, until a deeper change; a
    branch started from above ``run`` keeps the settings it had. Rows are never changed: each
    save is a new row (the history of a chat's settings is its rows, and the audit log's).

    Applied when a run is started (:func:`memory.selectors.branch_settings_for`), so the run itself
    records them: ``params`` (the one validator, :func:`core.params.clean_params`) merged over the
    agent's, ``system_prompt`` as ``params["system_override"]``, ``compaction`` (a policy,
    :func:`memory.policy.parse_policy`; empty: the agent's) as ``params["compaction"]`` and the
    row's id as ``params["branch_settings"]``. ``agent``: answers runs started without an agent.
    """

    RUN_KEYS = ("system_override", "compaction", "branch_settings")  # what it adds to a run's params

    run = models.ForeignKey("conversations.Run", on_delete=models.CASCADE, related_name="branch_settings")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    system_prompt = models.TextField(blank=True, help_text="Empty: the agent's (or the default) system prompt.")
    params = models.JSONField(default=dict, blank=True)
    compaction = models.JSONField(default=dict, blank=True, help_text="Empty: the agent's compaction policy.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "branch settings"

    def __str__(self) -> str:
        return f"Settings {self.pk} from run {self.run_id}"

    def run_params(self) -> dict:
        """What a run started under these settings records in its ``params`` (besides the model's)."""
        out: dict = {**self.params, "branch_settings": self.pk}
        if self.system_prompt:
            out["system_override"] = self.system_prompt
        if self.compaction:
            out["compaction"] = self.compaction
        return out


class SharedSummary(models.Model):
    """One summary of one prefix of a branch, written once and reused by every compaction that
    would summarise the same messages the same way — siblings under a compacted prefix make one
    summary call, not one each (:func:`engine.compaction.summarise_shared`).

    ``key``: SHA-256 of what determines the text: memory id, the summary it continues, the ids of
    the messages summarised (with any replacement sent for them), and the strategy's prompt, model,
    connection, temperature and token limit. ``usage``: the summariser's token counts.
    """

    key = models.CharField(max_length=64, unique=True)
    memory_id = models.CharField(max_length=100, default=DEFAULT_MEMORY_ID)
    summary = EncryptedTextField(blank=True)
    model = models.CharField(max_length=200, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    uses = models.PositiveIntegerField(default=1, help_text="Compactions that used it (the first included).")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Shared summary {self.key[:12]}"


class Pin(models.Model):
    """A pinned turn (``message`` empty: every message of ``run``) or one pinned message of it.

    A pin belongs to the run it is on, so it holds on every branch below that run and on none
    beside it (per branch by construction: a context reads only its own ancestors). No compaction
    strategy drops, truncates or summarises a pinned message; the context builder always sends it
    verbatim (:mod:`engine.context`), or fails the run naming the pins when they alone do not fit.
    An assistant message with tool calls is pinned with its tool results (they are sent together).
    """

    run = models.ForeignKey("conversations.Run", on_delete=models.CASCADE, related_name="pins")
    message = models.ForeignKey("conversations.Message", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+", help_text="Empty: the whole turn.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run"], condition=models.Q(message__isnull=True), name="pin_whole_turn"),
            models.UniqueConstraint(fields=["message"], name="pin_message"),
        ]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Pin of run {self.run_id}" + (f" message {self.message_id}" if self.message_id else "")


# Memory stores and semantic search: their tables live in memory.stores.models.
from memory.stores.models import MemoryStoreSession, MessageEmbedding  # noqa: E402,F401
