"""Agents and their memory settings (the Timbal/TFrameX memory model, done per branch).

An **agent** is a named configuration: model, system prompt, parameters, ``memory_id``,
``memory_window_size``, context budget and compaction policy. Runs answered by agents with the same
``memory_id`` share history on a branch; different ids are isolated. Behaviour lives in
:mod:`memory.context` (building a run's context) and :mod:`memory.compaction`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

DEFAULT_MEMORY_ID = "default"


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
    compaction = models.JSONField(default=dict, blank=True, help_text="Compaction policy (see memory.compaction).")
    tools = models.JSONField(default=list, blank=True, help_text="Names of registry tools this agent may call.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="agent_owner_name")]

    def __str__(self) -> str:
        return self.name
