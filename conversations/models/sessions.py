"""Sessions: a conversation's tree of runs and the leaf its owner looks at."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from .runs import Run, RunQuerySet, _ancestor_ids_sql


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
