"""Tables of the memory stores and semantic search (app label ``memory``; imported by memory.models).

- :class:`MemoryStoreSession`: the session a :class:`~search.memory_store.DatabaseMemoryStore` without
  a branch writes to, one per (owner, memory_id) — a unique pair, so two processes opening the
  same store for the first time agree on one session.
- :class:`MessageEmbedding`: a message's vector for one embedding model (float32 bytes, unit
  length), the index :mod:`memory.semantic` searches.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.db import models
from django.utils import timezone


class MemoryStoreSession(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    memory_id = models.CharField(max_length=100)
    session = models.OneToOneField("conversations.Session", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "memory"
        constraints = [models.UniqueConstraint(fields=["owner", "memory_id"], name="memorystore_owner_memory")]

    def __str__(self) -> str:
        return f"memory store {self.memory_id!r} of user {self.owner_id}"


class MessageEmbedding(models.Model):
    """The embedding of one message by one model. ``vector``: ``dimensions`` float32 values,
    little-endian, L2-normalised (so a dot product is the cosine similarity). ``owner`` is the
    session owner's id, copied so a user's index is read without joining the tree."""

    message = models.ForeignKey("conversations.Message", on_delete=models.CASCADE, related_name="embeddings")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=200, help_text="Embedder name, e.g. 'local:all-MiniLM-L6-v2'.")
    dimensions = models.PositiveIntegerField()
    vector = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "memory"
        constraints = [models.UniqueConstraint(fields=["message", "model"], name="embedding_message_model")]
        indexes = [models.Index(fields=["owner", "model"], name="embedding_owner_model")]

    def __str__(self) -> str:
        return f"{self.model} embedding of message {self.message_id}"

    def as_array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.vector), dtype="<f4")
