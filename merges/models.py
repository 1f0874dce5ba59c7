"""Provenance: the extra edges from a run to the runs its content came from.

The parent path stays a single chain (``Run.parent_run``), so path reads keep their cost; what a
run carries from elsewhere is recorded here, beside it:

* **fuse**: the run is a new sibling written by an agent from several sibling answers (its sources,
  in order). The sources entered the fused run's own input message, so its context (and the audit of
  it) shows them like any other model call's.
* **merge**: the run is a *merge turn* on a target branch: a finished run whose own messages are the
  carried content (``mode`` ``turns``: the chosen turns' messages verbatim; ``digest``: one message
  holding a digest of the source branch since the common ancestor). The next turn's context includes
  them through the normal path read; ``source_run`` is the source branch's run (its tip or any run).

A source run that is pruned later stays referenced (a prune is a soft delete): the link reads as
pruned (:func:`merges.selectors.provenance_map`) and the merge turn is untouched.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from core.fields import EncryptedTextField


class Kind(models.TextChoices):
    FUSE = "fuse"
    MERGE = "merge"


class Mode(models.TextChoices):
    TURNS = "turns"
    DIGEST = "digest"


class Provenance(models.Model):
    """Where one run's content came from (one row per fused run or merge turn)."""

    run = models.OneToOneField("conversations.Run", on_delete=models.CASCADE, related_name="provenance",
                               help_text="The fused run or the merge turn.")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    mode = models.CharField(max_length=8, choices=Mode.choices, blank=True, help_text="A merge's: turns or digest.")
    source_run = models.ForeignKey(
        "conversations.Run", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="A merge's source branch (the run picked on it); empty for a fuse.",
    )
    branch_name = models.CharField(max_length=60, blank=True,
                                   help_text="The source branch's label when the merge was made (kept if renamed).")
    instruction = EncryptedTextField(blank=True, help_text="A fuse's instruction to the agent.")
    digest = EncryptedTextField(blank=True, help_text="A digest merge's text, as confirmed.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["source_run"], name="provenance_source_run")]

    def __str__(self) -> str:
        return f"{self.kind} into {self.run_id}"


class ProvenanceSource(models.Model):
    """One source run of a provenance, in order: a fused answer, or a carried turn of a merge
    (a digest merge lists the turns the digest covers)."""

    provenance = models.ForeignKey(Provenance, on_delete=models.CASCADE, related_name="sources")
    run = models.ForeignKey("conversations.Run", on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provenance", "position"], name="provsource_position")]
        indexes = [models.Index(fields=["run"], name="provsource_run")]
        ordering = ["provenance_id", "position"]

    def __str__(self) -> str:
        return f"source {self.position} of {self.provenance_id}"


class FanOut(models.Model):
    """One send of the chat that started several sibling runs at once (2–4 variants of model, agent
    or connection), so the chat shows them side by side."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey("conversations.Session", on_delete=models.CASCADE, related_name="+")
    runs = models.ManyToManyField("conversations.Run", related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Fan-out {self.pk}"


class DigestDraft(models.Model):
    """A digest an agent drafts for a merge: an ordinary run (``run``), a root run of the merged
    session's own "merge digests" session, executed by the engine in a worker and audited like any
    other model call (exact context, tokens, latency). Its answer is the draft the merge dialog
    shows, editable, before the merge is confirmed; nothing else reads it."""

    run = models.OneToOneField("conversations.Run", on_delete=models.CASCADE, related_name="+",
                               help_text="The draft's run (its input: the instruction and the branch's transcript).")
    session = models.ForeignKey("conversations.Session", on_delete=models.CASCADE, related_name="+",
                                help_text="The session the merge is for (not the run's).")
    target = models.ForeignKey("conversations.Run", on_delete=models.CASCADE, related_name="+")
    source = models.ForeignKey("conversations.Run", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["session", "created_at"], name="digestdraft_session")]

    def __str__(self) -> str:
        return f"Digest draft {self.run_id}"
