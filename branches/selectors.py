"""Reads of the branch tools: named branches (labels), the branch diff, prunes that can be undone,
share links and the branch a link shows. The actions are in :mod:`branches.services`.

Every lookup answers NotFound for another user's object, as for one that does not exist (also for a
malformed id). A share link's token is the share's id signed with ``SECRET_KEY``
(:mod:`django.core.signing`, salt :data:`SHARE_SALT`); a token that does not verify, a revoked or
expired share, a deleted session or a pruned run all read as NotFound.
"""

from __future__ import annotations

import uuid

from django.core import signing

from conversations.models import BranchLabel, BranchShare, Message, Prune, Role, Run, Session
from conversations.selectors import get_run_for, undo_cutoff
from conversations.selectors.paths import newest_leaf_below
from core.errors import NotFound
from core.ids import parse_id
from core.prices import run_cost

from . import diff

SHARE_SALT = "arbor.branch-share"
SHARE_EXPIRY_DAYS = (1, 7, 30)  # the choices the pages offer; the API may give any whole number 1–365


# --- labels ---------------------------------------------------------------------------------------

def labels_of(session: Session):
    """The session's labels whose run is in its tree, oldest first, runs selected: a QuerySet."""
    return BranchLabel.objects.filter(session=session).visible().select_related("run").order_by("created_at", "name")


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
    qs = BranchLabel.objects.filter(session_id__in=ids).visible().order_by("created_at", "name")
    for label in qs:
        out.setdefault(label.session_id, []).append(label)
    return out


def get_label_for(user, session: Session, label_id) -> BranchLabel:
    """A label of ``session`` (a live session of ``user``, already looked up) whose run is in its
    tree. Raises NotFound otherwise, also for a malformed id."""
    pk = parse_id(label_id, "label")
    label = labels_of(session).filter(pk=pk, session__owner=user).first()
    if label is None:
        raise NotFound(f"No label with id {label_id}.")
    return label


# --- the branch diff ------------------------------------------------------------------------------

MERGE_FINISH = "merge"  # the finish reason of a merge turn (a run that carries another branch's turns)

def _path_rows(run_id) -> list[tuple]:
    """``[(id, depth)]`` of the path from the root to ``run_id`` (one recursive CTE, ids only)."""
    return list(Run.objects.ancestor_of(run_id, inclusive=True).order_by("depth").values_list("pk", "depth"))


def _turn_texts(run_ids: list) -> dict:
    """``{run_id: TurnText}`` of ``run_ids``: two queries (runs, then their user and assistant
    messages; a run's answer is its last assistant message). A merge turn (finish reason ``merge``)
    compares as its carried messages, all of them, as its input, and has no answer."""
    runs = {r.pk: r for r in Run.objects.filter(pk__in=run_ids).only(
        "id", "depth", "model", "status", "prompt_tokens", "completion_tokens", "started_at", "finished_at",
        "finish_reason")}
    inputs: dict = {}
    answers: dict = {}
    messages = (Message.objects.filter(run_id__in=run_ids, role__in=[Role.USER, Role.ASSISTANT])
                .order_by("run_id", "position").values_list("run_id", "position", "role", "content"))
    for run_id, position, role, content in messages:
        if runs[run_id].finish_reason == MERGE_FINISH:
            inputs[run_id] = (inputs[run_id] + "\n\n" if run_id in inputs else "Merged:\n\n") + content
        elif position == 0 and role == Role.USER:
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
    word-diffed (:func:`branches.diff.diff_branches`). Five queries at any depth.

    Returns ``{"a", "b" (the runs), "common" (TurnText of the deepest run both paths share, None
    when they share none), "shared_turns" (how many turns both paths share), "rows" (list of
    :class:`~branches.diff.Row`), "totals_a", "totals_b" (:class:`~branches.diff.DiffTotals`
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

def active_after_prune(session: Session, root: Run) -> Run | None:
    """The run shown once ``root``'s subtree is gone: the newest leaf left below its parent (the
    parent itself when nothing is), or for a root the session's newest run left."""
    if root.parent_run_id is not None:
        return newest_leaf_below(session, root.parent_run)
    return Run.objects.filter(session=session).unpruned().order_by("-created_at").first()


def undoable_prunes(session: Session):
    """The session's prunes that can still be undone, newest first: a QuerySet."""
    return (Prune.objects.filter(session=session, restored_at__isnull=True, created_at__gte=undo_cutoff())
            .select_related("run").order_by("-created_at"))


def get_prune_for(user, session: Session, prune_id) -> Prune:
    """An undoable prune of ``session`` (``user``'s live session). NotFound otherwise (also past the
    undo time, or already undone)."""
    pk = parse_id(prune_id, "prune", "Nothing to undo.")
    prune = undoable_prunes(session).filter(pk=pk, session__owner=user).first()
    if prune is None:
        raise NotFound("Nothing to undo: no such prune, or its undo time has passed.")
    return prune


# --- shares ---------------------------------------------------------------------------------------

def share_token(share: BranchShare) -> str:
    """The link's token: the share id signed with SECRET_KEY (the same token each time)."""
    return signing.dumps(share.pk.hex, salt=SHARE_SALT)


def shares_of(session: Session) -> list[BranchShare]:
    return list(BranchShare.objects.filter(session=session).select_related("run").order_by("-created_at"))


def get_share_for(user, session: Session, share_id) -> BranchShare:
    pk = parse_id(share_id, "share", "No such share.")
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
    """The turns of a shared branch, root first: ``[{"run", "input", "answer", "merged",
    "carried"}]`` (user input and final answer only: no tool traffic, no memory, no other branch).
    A merge turn (its input message records a merge's provenance) has ``merged`` (that record:
    branch name, mode, turns) and ``carried``: its messages ``[(role, content)]``, the content it
    brought into this branch, never the source branch itself. Two queries."""
    runs = list(Run.objects.ancestor_of(share.run_id, inclusive=True).order_by("depth")
                .only("id", "depth", "model", "status", "error_type", "error_message"))
    texts = {run.pk: {"run": run, "input": "", "answer": "", "merged": None, "carried": []} for run in runs}
    for m in Message.objects.path(share.run_id):
        if m.metadata.get("placeholder"):
            continue
        turn = texts[m.run_id]
        if m.position == 0 and (m.metadata.get("provenance") or {}).get("kind") == "merge":
            turn["merged"] = m.metadata["provenance"]
        if turn["merged"] is not None:
            turn["carried"].append((m.role, m.content))
            continue
        if m.position == 0 and m.role == Role.USER:
            texts[m.run_id]["input"] = m.content
        elif m.role == Role.ASSISTANT and m.content and not m.tool_calls:
            texts[m.run_id]["answer"] = m.content
    return [texts[run.pk] for run in runs]
