"""The JSON API of A/B comparisons (a django-ninja router, mounted by :mod:`config.api`): start
one (variants, one new prompt or a replayed branch, blind or not), read its side-by-side state with
per-cell metrics, vote on each prompt, reveal, resume, continue a variant's branch, and the results
(JSON and CSV) with the results page's filters.

The page (:mod:`comparisons.views`) and this API call the same code: variants are validated by
:func:`comparisons.forms.variant_spec` (the page's :class:`~comparisons.forms.VariantForm`), every
write is a :mod:`comparisons.services` function and every read a :mod:`comparisons.selectors` one.
Another user's comparisons, sessions, runs and agents are 404 like unknown ids. A blind
comparison's state names no variant (label, model, configuration, agent, cost) until it is
revealed; its columns are letters in the shuffled column order, A first. As on the page, each cell
carries its run's id (to stream it): blinding keeps the comparison's own answers neutral, it does
not stop a caller from reading that run through ``GET /api/runs/{run_id}``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from django.http import HttpResponse
from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate

from accounts.ratelimit import limit_run_creation
from conversations.selectors import get_run_for, get_run_to_act_on
from core.api_kit import BODY, MAX_PAGE_SIZE, Pages, answers

from . import selectors, services
from .forms import variant_spec
from .models import MAX_VARIANTS, MIN_VARIANTS, Comparison, Mode, VoteChoice

router = Router(tags=["comparisons"])

# --- schemas --------------------------------------------------------------------------------------


class VariantIn(Schema):
    """An existing agent (``agent_id``: yours or a shared one), or a configuration from which the
    comparison makes one: ``model`` (empty: the default model), ``system_prompt``, ``params``
    (temperature, top_p, max_tokens, seed, presence_penalty, frequency_penalty, stop),
    ``memory_id`` (default "default"), ``memory_window_size`` (messages; null keeps all) and
    ``connection_id`` (the model connection)."""

    label: str = Field(description="Shown once the labels are visible; unique within the comparison.")
    agent_id: int | None = None
    model: str | None = None
    system_prompt: str | None = None
    params: dict | None = None
    memory_id: str | None = None
    memory_window_size: int | None = None
    connection_id: int | None = Field(None, description="The model connection it runs on (default: the "
                                                        "environment's); see /api/connections.")


class ComparisonIn(Schema):
    branch_point_run_id: uuid.UUID = Field(description="Every variant's first run is a child of this run.")
    session_id: uuid.UUID | None = Field(
        None, description="The session the comparison belongs to (a fork comparing from a shared ancestor); "
                          "default: the branch point's own session.")
    variants: list[VariantIn] = Field(min_length=MIN_VARIANTS, max_length=MAX_VARIANTS)
    mode: Literal[tuple(Mode.values)] = Mode.NEW_PROMPT
    prompt: str | None = Field(None, description="new_prompt: the input every variant answers.")
    source_run_id: uuid.UUID | None = Field(
        None, description="replay: the last run of the branch whose user turns below the branch point are replayed.")
    blind: bool = Field(True, description="Shuffle the columns and hide which variant is which until every "
                                          "prompt has a vote.")
    tags: list[str] = Field(default_factory=list, description="At most 20, each up to 50 characters.")


class Metrics(Schema):
    prompt_tokens: int | None
    completion_tokens: int | None
    ttft: float | None = Field(description="Seconds to the first token.")
    latency: float | None = Field(description="Seconds from start to finish.")
    cost: float | None = Field(description="USD; null without a price for the model, and while blind.")


class CellOut(Schema):
    column: int
    letter: str
    run_id: uuid.UUID | None = Field(description="null until this column's turn has started.")
    status: str | None
    active: bool = Field(description="Still queued or running (stream it: GET /api/runs/{run_id}/events).")
    answer: str | None
    error: str | None
    stopped: str = Field(description="Why a replayed turn will not start (an earlier turn failed), else empty.")
    metrics: Metrics | None = Field(description="Once the run has finished.")


class RankOut(Schema):
    letter: str
    rank: int
    label: str | None = Field(description="null while blind.")


class VoteOut(Schema):
    choice: str
    note: str
    created_at: datetime
    ranking: list[RankOut] = Field(description="Best first; equal ranks tie.")


class TurnOut(Schema):
    turn: int
    prompt: str
    complete: bool = Field(description="Every column has finished: the prompt can get its vote.")
    cells: list[CellOut]
    vote: VoteOut | None


class VariantOut(Schema):
    label: str
    model: str
    agent_id: int | None
    config: dict = Field(description="model, system_prompt, params, memory_id, memory_window_size.")


class ColumnOut(Schema):
    column: int
    letter: str
    variant: VariantOut | None = Field(description="null while blind.")
    last_run_id: uuid.UUID | None = Field(description="The end of the variant's branch; null while blind.")


class TotalOut(Schema):
    letter: str
    turns: int
    prompt_tokens: int
    completion_tokens: int
    latency: float
    cost: float | None


class ComparisonOut(Schema):
    id: uuid.UUID
    session_id: uuid.UUID
    branch_point_run_id: uuid.UUID
    mode: str
    source_run_id: uuid.UUID | None
    blind: bool
    labels_visible: bool
    revealed_at: datetime | None
    created_at: datetime
    tags: list[str]
    columns: list[ColumnOut]
    turns: list[TurnOut]
    totals: list[TotalOut]
    stalled: bool = Field(description="A turn waits but nothing runs: POST .../resume starts it.")
    voting_finished: bool
    can_reveal: bool


class ComparisonSummary(Schema):
    id: uuid.UUID
    session_id: uuid.UUID
    mode: str
    blind: bool
    labels_visible: bool
    prompts: int
    columns: int
    labels: list[str] | None = Field(description="In column order; null while blind.")
    tags: list[str]
    created_at: datetime

    @staticmethod
    def resolve_prompts(obj: Comparison) -> int:
        return obj.turn_count

    @staticmethod
    def resolve_columns(obj: Comparison) -> int:
        return len(obj.column_order)

    @staticmethod
    def resolve_labels(obj: Comparison) -> list[str] | None:
        if not obj.labels_visible:
            return None
        labels = {v.position: v.label for v in obj.variants.all()}
        return [labels[p] for p in obj.column_order]

    @staticmethod
    def resolve_tags(obj: Comparison) -> list[str]:
        return [t.name for t in obj.tags.all()]


class VoteIn(Schema):
    choice: Literal[tuple(VoteChoice.values)] = Field(
        description="Two columns: a_better (A is the first column), b_better, tie or both_bad. More: ranking "
                    "(give ranking) or both_bad (all are bad).")
    ranking: list[int] | None = Field(None, description="ranking: the rank of each column, A first (1 is best).")
    note: str = ""


class OpenOut(Schema):
    session_id: uuid.UUID
    active_run_id: uuid.UUID


class ResumeOut(Schema):
    started: list[uuid.UUID]


class ConfigurationOut(Schema):
    key: str
    label: str
    connection: str
    model: str
    labels: list[str]
    votes: int
    games: int
    wins: int
    losses: int
    ties: int
    both_bad: int
    decisive: int
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None
    theta: float
    rating: float


class FiltersOut(Schema):
    tag: str | None
    since: str | None
    until: str | None
    by: str


class ResultsOut(Schema):
    filters: FiltersOut
    comparisons: int
    votes: int
    confidence: float
    win_rate: str
    rating: str
    configurations: list[ConfigurationOut]


# --- shapes ---------------------------------------------------------------------------------------

def _cell_out(cell: dict) -> dict:
    run = cell["run"]
    return {
        "column": cell["index"], "letter": cell["letter"], "run_id": run.pk if run else None,
        "status": run.status if run else None, "active": cell["active"], "answer": cell["answer"],
        "error": (run.error_message or None) if run else None, "stopped": cell["stopped"], "metrics": cell["metrics"],
    }


def _column_out(column: dict) -> dict:
    variant, last = column["variant"], column["last_run"]
    return {
        "column": column["index"], "letter": column["letter"], "last_run_id": last.pk if last else None,
        "variant": variant and {"label": variant.label, "model": variant.model_name, "agent_id": variant.agent_id,
                                "config": variant.config},
    }


def _turn_out(turn: dict) -> dict:
    vote = turn["vote"]
    return {
        "turn": turn["index"], "prompt": turn["prompt"], "complete": turn["complete"],
        "cells": [_cell_out(c) for c in turn["cells"]],
        "vote": vote and {"choice": vote["vote"].choice, "note": vote["vote"].note,
                          "created_at": vote["vote"].created_at, "ranking": vote["ranking"]},
    }


def comparison_out(comparison: Comparison) -> dict:
    """The side-by-side state (:func:`comparisons.selectors.board`) as :class:`ComparisonOut`."""
    state = selectors.board(comparison)
    return {
        "id": comparison.pk, "session_id": comparison.session_id, "branch_point_run_id": comparison.branch_point_id,
        "mode": comparison.mode, "source_run_id": comparison.source_run_id, "blind": comparison.blind,
        "labels_visible": comparison.labels_visible, "revealed_at": comparison.revealed_at,
        "created_at": comparison.created_at, "tags": state["tags"],
        "columns": [_column_out(c) for c in state["columns"]], "turns": [_turn_out(t) for t in state["turns"]],
        "totals": state["totals"], "stalled": state["stalled"], "voting_finished": state["voting_finished"],
        "can_reveal": state["can_reveal"],
    }


# --- results (before /comparisons/{comparison_id}, which would match "results") ------------------

RESULTS_DOC = ("Same filters as the results page: ``tag`` (a tag name), ``since`` and ``until`` (YYYY-MM-DD, "
               "included); ``by``: ``configuration`` (default) or ``model`` (one row per connection · model).")
CSV_DOC = {"responses": {200: {"description": "CSV: a header row, then one row per configuration",
                               "content": {"text/csv": {"schema": {"type": "string"}}}}}}


def _results(request, tag: str | None, since: str | None, until: str | None, by: str | None):
    filters = selectors.result_filters(tag=tag, since=since, until=until, by=by)
    return filters, selectors.compute_results(selectors.counted_comparisons(request.auth, filters), by=filters.by)


@router.get("/comparisons/results", response=answers({200: ResultsOut}, 400), description=RESULTS_DOC)
def comparison_results(request, tag: str | None = None, since: str | None = None, until: str | None = None,
                       by: str | None = None):
    """Win rates (Wilson 95 % intervals) and Bradley–Terry ratings per configuration over your
    comparisons that count (blind ones once revealed), best rating first."""
    filters, data = _results(request, tag, since, until, by)
    return selectors.results_json(filters, data)


@router.get("/comparisons/results.csv", response=answers({200: None}, 400), openapi_extra=CSV_DOC,
            description=RESULTS_DOC)
def comparison_results_csv(request, tag: str | None = None, since: str | None = None, until: str | None = None,
                           by: str | None = None):
    """The results as CSV (the results page's download)."""
    _, data = _results(request, tag, since, until, by)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{selectors.results_filename("csv")}"'
    selectors.write_results_csv(response, data)
    return response


# --- comparisons ----------------------------------------------------------------------------------

@router.post("/comparisons", response=answers({201: ComparisonOut}, *BODY, 404, 409, 429))
@limit_run_creation
def start_comparison(request, payload: ComparisonIn):
    """Start a comparison from a finished run (the branch point): each variant's first run is queued
    now, as a child of the branch point; in replay mode later turns follow as each run finishes.
    404: the session, a run or an agent is not yours; 409: the branch point has not finished."""
    user = request.auth
    session, branch_point = get_run_to_act_on(user, payload.branch_point_run_id, payload.session_id)
    source = get_run_for(user, payload.source_run_id) if payload.source_run_id else None
    specs = [variant_spec(v.dict(), user=user, where=f"variants[{i}]") for i, v in enumerate(payload.variants)]
    comparison = services.comparison_start(
        owner=user, session=session, branch_point=branch_point, variants=specs, mode=payload.mode,
        prompt=payload.prompt or "", source_run=source, blind=payload.blind, tags=payload.tags,
    )
    return Status(201, comparison_out(comparison))


@router.get("/comparisons", response=answers({200: list[ComparisonSummary]}, 400, 404))
@paginate(Pages, page_size=20, max_page_size=MAX_PAGE_SIZE)
def list_comparisons(request):
    """Your comparisons, newest first."""
    return selectors.comparisons_of(request.auth)


@router.get("/comparisons/{comparison_id}", response=answers({200: ComparisonOut}, 404))
def get_comparison(request, comparison_id: str):
    """The side-by-side state: per prompt and column the run, its answer, status and metrics
    (tokens, time to first token, latency, cost), the votes, per-column totals."""
    return comparison_out(selectors.get_comparison_for(request.auth, comparison_id))


@router.get("/comparisons/{comparison_id}/turns/{turn}/columns/{column}", response=answers({200: CellOut}, 400, 404))
def get_cell(request, comparison_id: str, turn: int, column: int):
    """One cell: column ``column`` (0 = A) of prompt ``turn`` (0-based). 400: not whole numbers."""
    comparison = selectors.get_comparison_for(request.auth, comparison_id)
    return _cell_out(selectors.one_cell(comparison, turn, column))


@router.post("/comparisons/{comparison_id}/turns/{turn}/vote",
             response=answers({201: ComparisonOut}, *BODY, 404, 409))
def vote(request, comparison_id: str, turn: int, payload: VoteIn):
    """Vote on prompt ``turn`` (0-based) once every column has answered it; a blind comparison is
    revealed when every prompt has its vote. 409: answers still running, or already voted."""
    comparison = selectors.get_comparison_for(request.auth, comparison_id)
    selectors.check_turn(comparison, turn)
    ranking = dict(enumerate(payload.ranking)) if payload.ranking is not None else None
    services.vote_cast(comparison=comparison, turn=turn, choice=payload.choice, ranking=ranking, note=payload.note)
    comparison.refresh_from_db()
    return Status(201, comparison_out(comparison))


@router.post("/comparisons/{comparison_id}/reveal", response=answers({200: ComparisonOut}, 404, 409))
def reveal(request, comparison_id: str):
    """Reveal a blind comparison whose voting is over although a variant stopped early (409 while a
    run is still to come or a prompt that can be voted on has no vote)."""
    return comparison_out(services.comparison_reveal(
        comparison=selectors.get_comparison_for(request.auth, comparison_id)))


@router.post("/comparisons/{comparison_id}/resume", response=answers({200: ResumeOut}, 404, 429))
@limit_run_creation
def resume(request, comparison_id: str):
    """Start every replayed turn that should be running but is not (``stalled``)."""
    started = services.comparison_resume(comparison=selectors.get_comparison_for(request.auth, comparison_id))
    return {"started": [run.pk for run in started]}


@router.post("/comparisons/{comparison_id}/columns/{column}/open",
             response=answers({200: OpenOut}, 400, 404, 409))
def open_branch(request, comparison_id: str, column: int):
    """Continue column ``column``'s branch (0 = A): its last run becomes the session's active run,
    so ``POST /api/sessions/{session_id}/runs`` continues it. 409 while blind."""
    comparison = selectors.get_comparison_for(request.auth, comparison_id)
    session, _ = services.branch_open(comparison=comparison, column=column)
    session.refresh_from_db(fields=["active_run"])
    return {"session_id": session.pk, "active_run_id": session.active_run_id}

