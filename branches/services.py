"""Branch tools: named branches (labels), prune with undo, and read-only share links. The actions
(each in one transaction, each audited); the reads are in :mod:`branches.selectors`, the pages in
:mod:`branches.views`, the JSON API in :mod:`branches.api`.

* **Labels** (:class:`~conversations.models.BranchLabel`) name a run of a session's tree, at most
  :data:`MAX_LABELS` per session, names unique in a session. A fork copies the labels that stand on
  its shared ancestors when it is made (:func:`copy_labels_to_fork`); after that each session's
  labels are its own.
* **Prune** cuts a session's own runs at and below a run (:class:`~conversations.models.Prune`):
  a soft delete undone within ``ARBOR_UNDO_DELETE_SECONDS`` like a session's (the same cutoff,
  :func:`conversations.selectors.undo_cutoff`); afterwards it stays hidden. Runs of other sessions
  are never touched, so a fork sharing pruned runs keeps working (the rule of a deleted session).
* **Shares** (:class:`~conversations.models.BranchShare`): the link's token is the share's id
  signed with ``SECRET_KEY`` (:mod:`django.core.signing`, salt :data:`SHARE_SALT`); a token that
  does not verify, a revoked or expired share, a deleted session or a pruned run all read as 404.

Every change is audited (:mod:`audit.log`): ``branch.label``, ``branch.label_rename``,
``branch.label_delete``, ``branch.prune``, ``branch.prune_undo``, ``branch.share``,
``branch.share_revoke``.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.log import audited, record
from conversations.models import MAX_LABELS, BranchLabel, BranchShare, Prune, Run, Session
from conversations.selectors import undo_cutoff
from core.errors import Conflict, InvalidInput, NotFound
from core.text import clean_text

from .selectors import active_after_prune

LABEL_LENGTH = 60


# --- labels ---------------------------------------------------------------------------------------

def clean_label(name) -> str:
    """A label's name: one line, 1–60 characters. Raises InvalidInput."""
    return clean_text(name, field="name", max_length=LABEL_LENGTH)


def _saved_label(label: BranchLabel) -> BranchLabel:
    try:
        with transaction.atomic():
            label.save()
    except IntegrityError:
        raise Conflict(f"This session already has a label named “{label.name}”.") from None
    return label


@transaction.atomic
@audited("branch.label", details=lambda kwargs, label: {"name": label.name, "session_id": str(label.session_id)})
def label_create(*, session: Session, run: Run, name: str) -> BranchLabel:
    """Name ``run`` (a run of ``session``'s tree) ``name``. Raises InvalidInput (name), NotFound (run
    not in the tree) and Conflict (the name is taken in this session, or MAX_LABELS reached)."""
    name = clean_label(name)
    if not session.can_branch_from(run):
        raise NotFound("That run is not part of this session.")
    if BranchLabel.objects.filter(session=session).count() >= MAX_LABELS:
        raise Conflict(f"A session has at most {MAX_LABELS} labels; delete one first.")
    return _saved_label(BranchLabel(session=session, run=run, name=name))


@transaction.atomic
@audited("branch.label_rename", details=lambda kwargs, label: {"name": label.name})
def label_rename(*, label: BranchLabel, name: str) -> BranchLabel:
    """Rename ``label``. Raises InvalidInput and Conflict (the name is taken in the session)."""
    label.name = clean_label(name)
    return _saved_label(label)


@transaction.atomic
def label_delete(*, label: BranchLabel) -> None:
    """Delete ``label`` (the run is untouched); audited as ``branch.label_delete``."""
    label_id, name, run_id = str(label.pk), label.name, str(label.run_id)
    label.delete()
    record("branch.label_delete", target_type="conversations.branchlabel", target_id=label_id,
           details={"name": name, "run_id": run_id, "session_id": str(label.session_id)})


# --- prune ----------------------------------------------------------------------------------------

def _prune_details(kwargs: dict, prune: Prune) -> dict:
    return {"root_run_id": str(prune.run_id), "runs": prune.run_count, "session_id": str(prune.session_id)}


@transaction.atomic
@audited("branch.prune", details=_prune_details)
def prune_subtree(*, session: Session, run: Run) -> Prune:
    """Prune ``run`` and every run of ``session`` below it: gone from the tree, the counts, search
    and exports, and undoable for ``ARBOR_UNDO_DELETE_SECONDS`` (:func:`prune_undo`). Other
    sessions' runs below (forks) are untouched. When the active run is in the subtree, the session
    shows the newest branch left next to it instead.

    Raises NotFound (not a run of this session's tree), Conflict (a fork's shared turn: it belongs
    to its source session; or a run of the subtree is still queued or running)."""
    if not session.can_branch_from(run):
        raise NotFound("That run is not part of this session.")
    if run.session_id != session.pk:
        raise Conflict("This turn belongs to the session this one was forked from; prune it there.")
    Session.objects.select_for_update().filter(pk=session.pk).first()  # one prune of a session at a time
    subtree = Run.objects.descendant_of(run, inclusive=True).filter(session=session).unpruned()
    if subtree.active().exists():
        raise Conflict("A run in this subtree is still running; stop it or wait for it to finish first.")
    prune = Prune.objects.create(session=session, run=run)
    prune.run_count = subtree.update(pruned_by=prune)
    active_id = Session.objects.filter(pk=session.pk).values_list("active_run_id", flat=True).first()
    if active_id is not None and Run.objects.filter(pk=active_id, pruned_by=prune).exists():
        prune.active_before_id = active_id
        leaf = active_after_prune(session, run)
        Session.objects.filter(pk=session.pk).update(active_run=leaf)
        session.active_run = leaf
    prune.save(update_fields=["run_count", "active_before"])
    return prune


@transaction.atomic
@audited("branch.prune_undo", details=_prune_details)
def prune_undo(*, prune: Prune) -> Prune:
    """Give back a pruned subtree (and the active run the prune moved away). Raises NotFound past
    the undo time or when already undone, Conflict while the run above it is itself pruned (undo
    that prune first)."""
    if prune.restored_at is not None or prune.created_at < undo_cutoff():
        raise NotFound("Nothing to undo: its undo time has passed.")
    root = prune.run
    if root.parent_run_id and Run.objects.filter(pk=root.parent_run_id, session_id=prune.session_id,
                                                 pruned_by__isnull=False).exists():
        raise Conflict("The turn above this subtree is pruned too: undo that prune first.")
    Run.objects.filter(pruned_by=prune).update(pruned_by=None)
    prune.restored_at = timezone.now()
    prune.save(update_fields=["restored_at"])
    if prune.active_before_id is not None:
        Session.objects.filter(pk=prune.session_id).update(active_run_id=prune.active_before_id)
    return prune


# --- shares ---------------------------------------------------------------------------------------

def _share_details(kwargs: dict, share: BranchShare) -> dict:
    return {"run_id": str(share.run_id), "session_id": str(share.session_id),
            "expires_at": share.expires_at.isoformat() if share.expires_at else None}


@transaction.atomic
@audited("branch.share", details=_share_details)
def share_create(*, session: Session, run: Run, expires_in_days: int | None = None) -> BranchShare:
    """A read-only link to the branch from the root to ``run``; ``expires_in_days`` 1–365 or None
    (no expiry). Raises InvalidInput, NotFound (run not in the tree) and Conflict (not finished)."""
    if expires_in_days is not None and (isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int)
                                        or not 1 <= expires_in_days <= 365):
        raise InvalidInput("expires_in_days must be a whole number from 1 to 365")
    if not session.can_branch_from(run):
        raise NotFound("That run is not part of this session.")
    if not run.is_finished:
        raise Conflict("This run has not finished yet; share it once it has.")
    expires = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    return BranchShare.objects.create(session=session, run=run, expires_at=expires)


@transaction.atomic
@audited("branch.share_revoke", details=_share_details)
def share_revoke(*, share: BranchShare) -> BranchShare:
    """Revoke a share: its link answers 404 from now on (the row stays, listed as revoked)."""
    if share.revoked_at is None:
        share.revoked_at = timezone.now()
        share.save(update_fields=["revoked_at"])
    return share
