"""Agents and their memory settings (the Timbal/TFrameX memory model, done per branch).

An **agent** is a named configuration: model, system prompt, parameters, ``memory_id``,
``memory_window_size``, context budget and compaction policy. Runs answered by agents with the same
``memory_id`` share history on a branch; different ids are isolated. Behaviour lives in
:mod:`memory.policy` (budget and compaction policy, parsed) and the engine
(:mod:`engine.context` builds a run's context, :mod:`engine.compaction` compacts).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from core.fields import EncryptedTextField

from .policy import parse_policy

DEFAULT_MEMORY_ID = "default"


class AgentQuerySet(models.QuerySet):
    def pickable_by(self, user) -> AgentQuerySet:
        """The agents ``user`` may pick for a run or a variant: their own and the shared ones, not
        the ones comparisons made for their variants; ordered by name."""
        return (self.filter(models.Q(owner=user) | models.Q(owner__isnull=True))
                .filter(made_by_comparison=False).order_by("name", "pk"))


class Agent(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="agents",
        help_text="Empty for agents every user may pick.",
    )
    name = models.CharField(max_length=100)
    model = models.CharField(max_length=200, blank=True, help_text="Empty: settings.ARBOR_MODEL.")
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

    def clean(self) -> None:
        """Validate the compaction policy (ValidationError with a readable message)."""
        try:
            parse_policy(self.compaction)
        except ValidationError as exc:
            raise ValidationError({"compaction": exc.messages}) from None


class CompactionStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"


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

    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


# Memory stores and semantic search (issue 5): their tables live in memory.stores.models.
from memory.stores.models import MemoryStoreSession, MessageEmbedding  # noqa: E402,F401
