"""Branch tools' rows: named branches (labels), prunes and shared links (actions and reads live in
the branches app)."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from .runs import Run
from .sessions import Session

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
