"""The JSON API of the branch tools: named branches (labels) and the branch diff (a django-ninja
router, mounted by :mod:`config.api` at the same paths as the sessions API, tag ``branches``).

Another user's session, run or label answers 404 exactly as an id that does not exist; errors are
JSON ``{"detail": "..."}`` and each operation's ``response=`` lists every status it answers
(:func:`core.api_kit.answers`). Actions in :mod:`branches.services`, reads in
:mod:`branches.selectors`, the word diff in :mod:`branches.diff`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from ninja import Field, Router, Schema, Status

from conversations.selectors import get_branch_run_for, get_session_for
from core.api_kit import BODY, answers

from . import selectors, services
from .services import LABEL_LENGTH

router = Router()

class LabelIn(Schema):
    run_id: uuid.UUID
    name: str = Field(min_length=1, max_length=LABEL_LENGTH)


class LabelRenameIn(Schema):
    name: str = Field(min_length=1, max_length=LABEL_LENGTH)


class LabelOut(Schema):
    id: uuid.UUID
    session_id: uuid.UUID
    run_id: uuid.UUID
    name: str
    depth: int
    created_at: datetime


class DiffSegment(Schema):
    """A piece of a text: ``op`` is ``equal``, ``delete`` (only in A) or ``insert`` (only in B)."""

    op: str
    text: str


class DiffTurn(Schema):
    run_id: uuid.UUID
    depth: int
    status: str
    model: str
    input: str
    answer: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_seconds: float | None
    cost_usd: float | None


class DiffRow(Schema):
    """One aligned row: ``kind`` ``same``, ``changed``, ``only_a`` or ``only_b``."""

    kind: str
    a: DiffTurn | None
    b: DiffTurn | None
    a_input: list[DiffSegment]
    b_input: list[DiffSegment]
    a_answer: list[DiffSegment]
    b_answer: list[DiffSegment]


class DiffTotals(Schema):
    turns: int
    prompt_tokens: int
    completion_tokens: int
    latency_seconds: float
    cost_usd: float | None
    cost_complete: bool


class DiffOut(Schema):
    a_run_id: uuid.UUID
    b_run_id: uuid.UUID
    common_ancestor_run_id: uuid.UUID | None
    shared_turns: int
    totals_a: DiffTotals
    totals_b: DiffTotals
    rows: list[DiffRow]


def _label_out(label) -> dict:
    return {"id": label.pk, "session_id": label.session_id, "run_id": label.run_id, "name": label.name,
            "depth": label.run.depth, "created_at": label.created_at}


@router.get("/sessions/{session_id}/labels", response=answers({200: list[LabelOut]}, 404), tags=["branches"])
def list_labels(request, session_id: str):
    """The session's named branches, oldest first (labels on pruned runs are left out)."""
    session = get_session_for(request.auth, session_id)
    return [_label_out(label) for label in selectors.labels_of(session)]


@router.post("/sessions/{session_id}/labels", response=answers({201: LabelOut}, *BODY, 404, 409), tags=["branches"])
def create_label(request, session_id: str, payload: LabelIn):
    """Name a run of the session's tree (1–60 characters, unique in the session: else 409)."""
    session = get_session_for(request.auth, session_id)
    run = get_branch_run_for(request.auth, session, payload.run_id)
    return Status(201, _label_out(services.label_create(session=session, run=run, name=payload.name)))


@router.patch("/sessions/{session_id}/labels/{label_id}", response=answers({200: LabelOut}, *BODY, 404, 409),
           tags=["branches"])
def rename_label(request, session_id: str, label_id: str, payload: LabelRenameIn):
    session = get_session_for(request.auth, session_id)
    label = selectors.get_label_for(request.auth, session, label_id)
    return _label_out(services.label_rename(label=label, name=payload.name))


@router.delete("/sessions/{session_id}/labels/{label_id}", response=answers({204: None}, 404), tags=["branches"])
def delete_label(request, session_id: str, label_id: str):
    """Delete a label (the run is untouched)."""
    session = get_session_for(request.auth, session_id)
    services.label_delete(label=selectors.get_label_for(request.auth, session, label_id))
    return Status(204, None)


def _diff_turn(turn) -> dict | None:
    if turn is None:
        return None
    return {"run_id": turn.run_id, "depth": turn.depth, "status": turn.status, "model": turn.model,
            "input": turn.input, "answer": turn.answer, "prompt_tokens": turn.prompt_tokens,
            "completion_tokens": turn.completion_tokens, "latency_seconds": turn.latency, "cost_usd": turn.cost}


def _segments(segments) -> list[dict]:
    return [{"op": op, "text": text} for op, text in segments]


def _diff_totals(totals) -> dict:
    return {"turns": totals.turns, "prompt_tokens": totals.prompt_tokens, "completion_tokens": totals.completion_tokens,
            "latency_seconds": totals.latency, "cost_usd": totals.cost, "cost_complete": totals.cost_complete}


@router.get("/runs/{a}/diff/{b}", response=answers({200: DiffOut}, 404), tags=["branches"])
def diff_runs(request, a: str, b: str):
    """The branches ending at runs ``a`` and ``b`` side by side from their common ancestor: turns
    aligned (difflib over the inputs), word-level differences of inputs and answers, and each
    branch's totals below the common ancestor (turns, tokens, latency in seconds, cost in USD)."""
    run_a, run_b = selectors.runs_for_diff(request.auth, a, b)
    result = selectors.branch_diff(run_a, run_b)
    return {
        "a_run_id": run_a.pk, "b_run_id": run_b.pk,
        "common_ancestor_run_id": result["common"].run_id if result["common"] else None,
        "shared_turns": result["shared_turns"],
        "totals_a": _diff_totals(result["totals_a"]), "totals_b": _diff_totals(result["totals_b"]),
        "rows": [{"kind": row.kind, "a": _diff_turn(row.a), "b": _diff_turn(row.b),
                  "a_input": _segments(row.a_input), "b_input": _segments(row.b_input),
                  "a_answer": _segments(row.a_answer), "b_answer": _segments(row.b_answer)}
                 for row in result["rows"]],
    }
