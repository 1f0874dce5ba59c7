"""Branch tools (issue 13): named branches (labels), the branch diff's reads, prune with undo, and
read-only share links. Request-side services and reads; pages in :mod:`conversations.branch_views`,
the JSON API in :mod:`conversations.api` (its "branch tools" section).

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

import uuid
from datetime import timedelta

from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.log import audited, record
from core.errors import Conflict, InvalidInput, NotFound
from core.prices import run_cost
from core.text import clean_text

from . import diff
from .browse import newest_leaf_below
from .models import BranchLabel, BranchShare, Message, Prune, Role, Run, Session
from .selectors import get_run_for, undo_cutoff

MAX_LABELS = 200  # labels per session
LABEL_LENGTH = 60
SHARE_SALT = "arbor.branch-share"
SHARE_EXPIRY_DAYS = (1, 7, 30)  # the choices the pages offer; the API may give any whole number 1–365


# --- labels ---------------------------------------------------------------------------------------

def _visible(labels):
    """Labels whose run is in their session's tree: an own run that is pruned hides its labels
    (until an undo); a fork's shared run always counts."""
    return labels.filter(Q(run__pruned_by__isnull=True) | ~Q(run__session_id=F("session_id")))


def labels_of(session: Session):
    """The session's labels whose run is in its tree, oldest first, runs selected: a QuerySet."""
    return _visible(BranchLabel.objects.filter(session=session)).select_related("run").order_by("created_at", "name")


def labels_by_run(session: Session) -> dict:
    """``{run_id: [BranchLabel, ...]}`` of :func:`labels_of` (one query, kept on ``session`` for the
    rest of the request: every turn of a page asks)."""
    cached = getattr(session, "_branch_labels_by_run", None)
    if cached is None:
        cached = {}
        for label in labels_of(session):
            cached.setdefault(label.run_id, []).append(label)
        session._branch_labels_by_run = cached
    return cached


def labels_of_sessions(sessions) -> dict:
    """``{session_id: [BranchLabel, ...]}`` for a list of sessions (one query; the sessions list)."""
    ids = [s.pk for s in sessions]
    out: dict = {}
    if not ids:
        return out
    qs = _visible(BranchLabel.objects.filter(session_id__in=ids)).order_by("created_at", "name")
    for label in qs:
        out.setdefault(label.session_id, []).append(label)
    return out


def clean_label(name) -> str:
    """A label's name: one line, 1–60 characters. Raises InvalidInput."""
    return clean_text(name, field="name", max_length=LABEL_LENGTH)


def get_label_for(user, session: Session, label_id) -> BranchLabel:
    """A label of ``session`` (a live session of ``user``, already looked up) whose run is in its
    tree. Raises NotFound otherwise, also for a malformed id."""
    try:
        pk = uuid.UUID(str(label_id))
    except ValueError:
        raise NotFound(f"No label with id {label_id!r}.") from None
    label = labels_of(session).filter(pk=pk, session__owner=user).first()
    if label is None:
        raise NotFound(f"No label with id {label_id}.")
    return label


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


def copy_labels_to_fork(fork: Session) -> int:
    """Give a new fork copies of the labels its source session shows on the runs the fork shares
    (the ancestors of ``forked_from_run``, it included); returns how many. Called when the fork is
    made, inside its transaction: one query when the source has no label, two otherwise."""
    if fork.forked_from_run_id is None:
        return 0
    source_id = fork.forked_from_run.session_id
    shared = Run.objects.ancestor_of(fork.forked_from_run_id, inclusive=True).values("pk")
    labels = _visible(BranchLabel.objects.filter(session_id=source_id, run_id__in=shared)).order_by("created_at")
    copies = [BranchLabel(session=fork, run_id=label.run_id, name=label.name, created_at=label.created_at)
              for label in labels[:MAX_LABELS]]
    BranchLabel.objects.bulk_create(copies)
    return len(copies)


# --- the branch diff ------------------------------------------------------------------------------

def _path_rows(run_id) -> list[tuple]:
    """``[(id, depth)]`` of the path from the root to ``run_id`` (one recursive CTE, ids only)."""
    return list(Run.objects.ancestor_of(run_id, inclusive=True).order_by("depth").values_list("pk", "depth"))


def _turn_texts(run_ids: list) -> dict:
    """``{run_id: TurnText}`` of ``run_ids``: two queries (runs, then their user and assistant
    messages; a run's answer is its last assistant message)."""
    runs = {r.pk: r for r in Run.objects.filter(pk__in=run_ids).only(
        "id", "depth", "model", "status", "prompt_tokens", "completion_tokens", "started_at", "finished_at")}
    inputs: dict = {}
    answers: dict = {}
    messages = (Message.objects.filter(run_id__in=run_ids, role__in=[Role.USER, Role.ASSISTANT])
                .order_by("run_id", "position").values_list("run_id", "position", "role", "content"))
    for run_id, position, role, content in messages:
        if position == 0 and role == Role.USER:
            inputs[run_id] = content
        elif role == Role.ASSISTANT and content:
            answers[run_id] = content
    return {
        pk: diff.TurnText(
            run_id=pk, depth=run.depth, input=inputs.get(pk, ""), answer=answers.get(pk, ""), model=run.model,
            status=run.status, prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens,
            latency=run.latency_seconds(), cost=run_cost(run.model, run.prompt_tokens, run.completion_tokens),
        )
        for pk, run in runs.items()
    }


def branch_diff(a: Run, b: Run) -> dict:
    """The two branches ending at ``a`` and ``b``, from their common ancestor down, aligned and
    word-diffed (:func:`conversations.diff.diff_branches`). Five queries at any depth.

    Returns ``{"a", "b" (the runs), "common" (TurnText of the deepest run both paths share, None
    when they share none), "shared_turns" (how many turns both paths share), "rows" (list of
    :class:`~conversations.diff.Row`), "totals_a", "totals_b" (:class:`~conversations.diff.Totals`
    of each branch below the common ancestor)}``."""
    path_a, path_b = _path_rows(a.pk), _path_rows(b.pk)
    on_b = {pk for pk, _ in path_b}
    shared = 0
    for pk, _ in path_a:
        if pk not in on_b:
            break
        shared += 1
    common_id = path_a[shared - 1][0] if shared else None
    below_a = [pk for pk, _ in path_a[shared:]]
    below_b = [pk for pk, _ in path_b[shared:]]
    texts = _turn_texts(below_a + below_b + ([common_id] if common_id else []))
    rows, totals_a, totals_b = diff.diff_branches([texts[pk] for pk in below_a], [texts[pk] for pk in below_b])
    return {"a": a, "b": b, "common": texts.get(common_id), "shared_turns": shared, "rows": rows,
            "totals_a": totals_a, "totals_b": totals_b}


def runs_for_diff(user, a_id, b_id) -> tuple[Run, Run]:
    """Both runs of a diff, each one of ``user``'s (NotFound otherwise, like every run lookup)."""
    return get_run_for(user, a_id), get_run_for(user, b_id)


# --- prune ----------------------------------------------------------------------------------------

def _prune_details(kwargs: dict, prune: Prune) -> dict:
    return {"root_run_id": str(prune.run_id), "runs": prune.run_count, "session_id": str(prune.session_id)}


def _active_after_prune(session: Session, root: Run) -> Run | None:
    """The run shown once ``root``'s subtree is gone: the newest leaf left below its parent (the
    parent itself when nothing is), or for a root the session's newest run left."""
    if root.parent_run_id is not None:
        return newest_leaf_below(session, root.parent_run)
    return Run.objects.filter(session=session).unpruned().order_by("-created_at").first()


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
        leaf = _active_after_prune(session, run)
        Session.objects.filter(pk=session.pk).update(active_run=leaf)
        session.active_run = leaf
    prune.save(update_fields=["run_count", "active_before"])
    return prune


def undoable_prunes(session: Session):
    """The session's prunes that can still be undone, newest first: a QuerySet."""
    return (Prune.objects.filter(session=session, restored_at__isnull=True, created_at__gte=undo_cutoff())
            .select_related("run").order_by("-created_at"))


def get_prune_for(user, session: Session, prune_id) -> Prune:
    """An undoable prune of ``session`` (``user``'s live session). NotFound otherwise (also past the
    undo time, or already undone)."""
    try:
        pk = uuid.UUID(str(prune_id))
    except ValueError:
        raise NotFound("Nothing to undo.") from None
    prune = undoable_prunes(session).filter(pk=pk, session__owner=user).first()
    if prune is None:
        raise NotFound("Nothing to undo: no such prune, or its undo time has passed.")
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

def share_token(share: BranchShare) -> str:
    """The link's token: the share id signed with SECRET_KEY (the same token each time)."""
    return signing.dumps(share.pk.hex, salt=SHARE_SALT)


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


def shares_of(session: Session) -> list[BranchShare]:
    return list(BranchShare.objects.filter(session=session).select_related("run").order_by("-created_at"))


def get_share_for(user, session: Session, share_id) -> BranchShare:
    try:
        pk = uuid.UUID(str(share_id))
    except ValueError:
        raise NotFound("No such share.") from None
    share = BranchShare.objects.filter(pk=pk, session=session, session__owner=user).first()
    if share is None:
        raise NotFound("No such share.")
    return share


def share_from_token(token: str) -> BranchShare:
    """The live share a link's token names. NotFound (the same answer for each) when the token does
    not verify, or the share is revoked or expired, its session deleted or its run pruned."""
    try:
        pk = uuid.UUID(hex=signing.loads(token, salt=SHARE_SALT))
    except (signing.BadSignature, TypeError, ValueError):
        raise NotFound("No such shared branch.") from None
    share = BranchShare.objects.select_related("session", "run").filter(pk=pk).first()
    if (share is None or not share.is_live() or share.session.is_deleted
            or not share.session.can_branch_from(share.run)):
        raise NotFound("No such shared branch.")
    return share


def shared_turns(share: BranchShare) -> list[dict]:
    """The turns of a shared branch, root first: ``[{"run", "input", "answer"}]`` (user input and
    final answer only: no tool traffic, no memory, no other branch). Two queries."""
    runs = list(Run.objects.ancestor_of(share.run_id, inclusive=True).order_by("depth")
                .only("id", "depth", "model", "status", "error_type", "error_message"))
    texts = {run.pk: {"run": run, "input": "", "answer": ""} for run in runs}
    for m in Message.objects.path(share.run_id):
        if m.metadata.get("placeholder"):
            continue
        if m.position == 0 and m.role == Role.USER:
            texts[m.run_id]["input"] = m.content
        elif m.role == Role.ASSISTANT and m.content and not m.tool_calls:
            texts[m.run_id]["answer"] = m.content
    return [texts[run.pk] for run in runs]
