"""The JSON API of fan-out, fuse and merge (a django-ninja router mounted by :mod:`config.api` at the
same paths as the sessions API, tag ``merges``).

Another user's session, run, agent or connection answers 404 exactly as an id that does not exist,
whatever the body (required fields are checked after the lookups); bad input is a JSON 400
``{"detail": ...}`` and writes nothing. Actions in :mod:`merges.services`,
reads in :mod:`merges.selectors`.
"""

from __future__ import annotations

import uuid

from ninja import Field, Router, Schema, Status

from accounts.ratelimit import limit_run_creation
from connections.selectors import get_connection_for
from conversations.selectors import get_branch_run_for, get_run_to_act_on, get_session_for
from core.api_kit import BODY, answers
from core.errors import InvalidInput
from memory.selectors import get_agent_for

from . import services

router = Router()


class VariantIn(Schema):
    model: str | None = Field(None, description="The model name (default: the agent's, else the default model).")
    agent_id: int | None = None
    connection_id: int | None = Field(None, description="The connection (default: the agent's, else the default).")


class FanOutIn(Schema):
    input: str
    parent_run_id: uuid.UUID | None = Field(None, description="Default: the session's active run.")
    variants: list[VariantIn] = Field(default_factory=list, max_length=8,
                                      description="2 to 4 variants; one sibling run each, started at once.")


class StartedRun(Schema):
    run_id: uuid.UUID
    status: str
    model: str
    connection_id: int | None
    agent_id: int | None


class FanOutOut(Schema):
    fan_out_id: uuid.UUID
    runs: list[StartedRun] = Field(description="In variant order; the first is the session's shown run.")


class FuseIn(Schema):
    source_run_ids: list[uuid.UUID] = Field(default_factory=list, max_length=16,
                                            description="2 to 8 succeeded siblings of the run (it may be one).")
    agent_id: int | None = Field(None, description="Who writes the fused answer (default: as for a new run).")
    instruction: str | None = Field(None, description="What the agent is asked (default: combine the best).")


class MergeIn(Schema):
    source_run_id: uuid.UUID | None = Field(None, description="A run of the source branch (its tip or any turn; "
                                                             "required).")
    mode: str = Field("", description="``turns`` (chosen turns verbatim) or ``digest`` (required).")
    run_ids: list[uuid.UUID] | None = Field(None, description="Turns mode: the source branch's turns to carry "
                                                              "(default: all since the common ancestor).")
    digest: str | None = Field(None, description="Digest mode: the digest as confirmed (or draft_run_id).")
    draft_run_id: uuid.UUID | None = Field(None, description="Digest mode: use this finished draft run's answer "
                                                             "as the digest (409 while it is going or if it failed).")
    dry_run: bool = Field(False, description="Only preview: nothing is written.")


class CarriedMessage(Schema):
    role: str
    content: str
    tokens: int


class BranchTurn(Schema):
    run_id: uuid.UUID
    turn: int
    carried: bool


class MergeOut(Schema):
    dry_run: bool
    run_id: uuid.UUID | None = Field(description="The merge turn (null on a dry run).")
    target_run_id: uuid.UUID
    source_run_id: uuid.UUID
    common_ancestor_run_id: uuid.UUID | None
    branch_name: str
    mode: str
    messages: list[CarriedMessage] = Field(description="Exactly what enters the target branch's context.")
    tokens: int = Field(description="Tokens of those messages, template overhead included.")
    digest: str
    turns: list[BranchTurn] = Field(description="The source branch's turns since the common ancestor.")


class DraftIn(Schema):
    source_run_id: uuid.UUID | None = Field(None, description="A run of the source branch (required).")
    agent_id: int | None = Field(None, description="Who drafts (default: the target's agent, else its model).")


class DraftOut(Schema):
    draft_run_id: uuid.UUID = Field(description="The draft's run: follow it (GET /api/runs/{id}, its events); "
                                                "its ``output`` is the draft.")
    session_id: uuid.UUID = Field(description="The session of the draft run (the merged session's digests).")
    status: str
    target_run_id: uuid.UUID
    source_run_id: uuid.UUID


class UndoOut(Schema):
    prune_id: uuid.UUID
    run_id: uuid.UUID
    active_run_id: uuid.UUID | None


def _started(run) -> dict:
    return {"run_id": run.pk, "status": run.status, "model": run.model, "connection_id": run.connection_id,
            "agent_id": run.agent_id}


def _variant(user, spec: VariantIn) -> services.Variant:
    variant = services.Variant(model=spec.model)
    if spec.agent_id is not None:
        variant.agent = get_agent_for(user, spec.agent_id)
    if spec.connection_id is not None:
        variant.connection, variant.has_connection = get_connection_for(user, spec.connection_id), True
    return variant


@router.post("/sessions/{session_id}/fan-out", response=answers({202: FanOutOut}, *BODY, 404, 409, 429),
             tags=["merges"])
@limit_run_creation
def fan_out(request, session_id: str, payload: FanOutIn):
    """Ask 2–4 models, agents or connections at once: one sibling run per variant, all with the same
    input below the same parent, started together. The first becomes the shown branch."""
    session = get_session_for(request.auth, session_id)
    variants = [_variant(request.auth, spec) for spec in payload.variants]
    kwargs = {}
    if payload.parent_run_id is not None:
        kwargs["parent"] = get_branch_run_for(request.auth, session, payload.parent_run_id)
    group = services.fan_out(session=session, input=payload.input, variants=variants, **kwargs)
    return Status(202, {"fan_out_id": group.pk, "runs": [_started(run) for run in group.started]})


@router.post("/runs/{run_id}/fuse", response=answers({202: StartedRun}, *BODY, 404, 409, 429), tags=["merges"])
@limit_run_creation
def fuse(request, run_id: str, payload: FuseIn):
    """A new sibling of the run whose answer an agent writes from the sources' answers (the
    instruction, the question and each answer are its input). ``GET /api/runs/{id}`` lists its sources."""
    session, run = get_run_to_act_on(request.auth, run_id)
    agent = get_agent_for(request.auth, payload.agent_id) if payload.agent_id is not None else None
    fused = services.fuse(session=session, run=run, source_ids=list(payload.source_run_ids), agent=agent,
                          instruction=payload.instruction)
    return Status(202, _started(fused))


def _merge_out(plan: services.MergePlan, run) -> dict:
    carried = {r.pk for r in plan.carried}
    return {
        "dry_run": run is None, "run_id": run.pk if run is not None else None, "target_run_id": plan.target.pk,
        "source_run_id": plan.source.pk, "common_ancestor_run_id": plan.ancestor.pk if plan.ancestor else None,
        "branch_name": plan.branch_name, "mode": plan.mode, "tokens": plan.tokens, "digest": plan.digest,
        "messages": [{"role": m["role"], "content": m["content"], "tokens": row["tokens"]}
                     for m, row in zip(plan.messages, plan.message_rows, strict=True)],
        "turns": [{"run_id": r.pk, "turn": r.depth + 1, "carried": r.pk in carried} for r in plan.runs],
    }


@router.post("/runs/{run_id}/merge", response=answers({200: MergeOut}, *BODY, 404, 409), tags=["merges"])
def merge(request, run_id: str, payload: MergeIn):
    """Merge a branch back into this run's branch: a merge turn below this run carrying the source
    branch's chosen turns verbatim or a digest of them. Answers the plan: the exact messages and their
    tokens; ``dry_run``: only that (``run_id`` null), nothing written; else ``run_id`` is the merge turn.

    Digest mode needs ``digest`` (the text) or ``draft_run_id`` (a finished draft's answer as is):
    no model call happens in this request; ``POST /api/runs/{run_id}/merge/digest-draft`` starts one."""
    session, target = get_run_to_act_on(request.auth, run_id)
    if payload.source_run_id is None:
        raise InvalidInput("source_run_id is required")
    source = get_branch_run_for(request.auth, session, payload.source_run_id)
    digest = payload.digest
    if payload.mode == "digest" and digest is None:
        if payload.draft_run_id is None:
            raise InvalidInput("Digest mode needs digest or draft_run_id (start a draft with "
                               "POST /api/runs/{run_id}/merge/digest-draft).")
        digest = services.digest_draft_text(services.digest_draft_for(session, payload.draft_run_id))
    plan = services.merge_plan(session=session, target=target, source=source, mode=payload.mode,
                               run_ids=list(payload.run_ids) if payload.run_ids is not None else None, digest=digest)
    if payload.dry_run:
        return Status(200, _merge_out(plan, None))
    return Status(200, _merge_out(plan, services.merge_create(session=session, plan=plan)))


@router.post("/runs/{run_id}/merge/digest-draft", response=answers({202: DraftOut}, *BODY, 404, 409, 429),
             tags=["merges"])
@limit_run_creation
def merge_digest_draft(request, run_id: str, payload: DraftIn):
    """Have an agent draft the digest of a merge into this run: a run (executed by a worker,
    streamed and audited like any run; a root run of the session's "Merge digests" session, so the
    chat does not change) whose input is the instruction and the source branch's turns since the
    common ancestor. Follow it (``GET /api/runs/{draft_run_id}``, its events); its ``output`` is the
    draft: send it (edited or not) as ``digest``, or its id as ``draft_run_id``, to the merge."""
    session, target = get_run_to_act_on(request.auth, run_id)
    if payload.source_run_id is None:
        raise InvalidInput("source_run_id is required")
    source = get_branch_run_for(request.auth, session, payload.source_run_id)
    agent = get_agent_for(request.auth, payload.agent_id) if payload.agent_id is not None else None
    draft = services.digest_draft_start(session=session, target=target, source=source, agent=agent)
    return Status(202, {"draft_run_id": draft.run_id, "session_id": draft.run.session_id, "status": draft.run.status,
                        "target_run_id": target.pk, "source_run_id": source.pk})


@router.post("/runs/{run_id}/merge/undo", response=answers({200: UndoOut}, 404, 409), tags=["merges"])
def merge_undo(request, run_id: str):
    """Undo a merge within the undo time: the merge turn is pruned (its undo gives it back) and the
    shown branch returns to the target. 409 once a turn was added below the merge turn (an undo
    never prunes those: prune the merge turn for that); 404 once the undo time has passed."""
    session, run = get_run_to_act_on(request.auth, run_id)
    prune = services.merge_undo(session=session, run=run)
    return {"prune_id": prune.pk, "run_id": run.pk, "active_run_id": session.active_run_id}
