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
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate

from accounts.ratelimit import limit_run_creation
from conversations.selectors import get_run_for, get_run_to_act_on
from core.api_kit import BODY, MAX_PAGE_SIZE, Pages, answers
from core.dates import DAY_SCHEMA
from core.errors import InvalidInput
from memory.models import Agent
from memory.selectors import get_agent_for

from . import insights, judges, judging, selectors, services, suites
from .forms import variant_spec
from .models import COLUMN_LETTERS, MAX_VARIANTS, MIN_VARIANTS, Comparison, Mode, Rubric, VoteChoice

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
    samples: int = Field(1, description="Answers per variant and prompt, 1–10: the voted one and repeats "
                                        "(siblings with the seed raised by 1, 2, …) for the spread.")


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
    branch_point_run_id: uuid.UUID | None = Field(description="null for a suite case (replayed from the start).")
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
    people_rating: float | None = Field(None, description="Bradley–Terry (Elo scale) from your votes only.")
    people_games: int | None = None
    judge_rating: float | None = Field(None, description="From the newest judging's combined verdicts only.")
    judge_games: int | None = None
    both_rating: float | None = None
    both_games: int | None = None
    raw: float | None = Field(None, description="Bradley–Terry of the style fit without covariates.")
    raw_low: float | None = None
    raw_high: float | None = None
    controlled: float | None = Field(None, description="With length and markdown covariates (style control).")
    controlled_low: float | None = None
    controlled_high: float | None = None


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
    evaluation: dict | None = Field(None, description="agreement (judge against people: n, agreement, kappa with "
                                                      "its 95 % interval, confusion table, sentence), by_tag, "
                                                      "counts, votes_needed per pair, position_bias.")


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
    comparisons = selectors.counted_comparisons(request.auth, filters)
    data = selectors.compute_results(comparisons, by=filters.by)
    data["evaluation"] = insights.cached_evaluation(comparisons, by=filters.by)
    return filters, data


class ResultsIn(Schema):
    tag: str | None = None
    since: str = Field(None, **DAY_SCHEMA, description="YYYY-MM-DD: comparisons made on or after this day.")
    until: str = Field(None, **DAY_SCHEMA, description="YYYY-MM-DD: comparisons made on or before this day.")
    by: str | None = None


@router.get("/comparisons/results", response=answers({200: ResultsOut}, 400), description=RESULTS_DOC)
def comparison_results(request, params: Query[ResultsIn]):
    """Win rates (Wilson 95 % intervals) and Bradley–Terry ratings per configuration over your
    comparisons that count (blind ones once revealed), best rating first."""
    filters, data = _results(request, params.tag, params.since, params.until, params.by)
    return selectors.results_json(filters, data)


@router.get("/comparisons/results.csv", response=answers({200: None}, 400), openapi_extra=CSV_DOC,
            description=RESULTS_DOC)
def comparison_results_csv(request, params: Query[ResultsIn]):
    """The results as CSV (the results page's download)."""
    _, data = _results(request, params.tag, params.since, params.until, params.by)
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
        samples=payload.samples,
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



# --- rubrics and judges ------------------------------------------------------------------------------

class RubricIn(Schema):
    name: str = Field("", description="1–100 characters, unique among your rubrics (ignoring case).")
    text: str = Field("", description="What the judge weighs, 1–8000 characters.")
    scale_max: int = Field(0, description="0: a verdict only; 2–10: the judge also scores each answer 1…scale_max.")
    pass_threshold: int | None = Field(None, description="With a scale: a score at or above it passes.")


class RubricOut(Schema):
    id: int | None = Field(description="null for a template.")
    key: str | None = Field(None, description="The template's key (helpfulness, correctness, instructions, "
                                              "harmlessness); null for your own.")
    name: str
    text: str
    scale_max: int
    pass_threshold: int | None


class JudgingIn(Schema):
    agent_id: int | None = Field(None, description="The judge: one of your agents or a shared one (required).")
    rubric_id: int | None = Field(None, description="One of your rubrics; or give the fields below.")
    template: str | None = Field(None, description="A template's key, taken as is.")
    rubric_name: str | None = None
    rubric_text: str | None = None
    scale_max: int = 0
    pass_threshold: int | None = None


class JudgementOut(Schema):
    order: list[str] = Field(description="The column letters in the order the judge saw them.")
    run_id: uuid.UUID = Field(description="The judge call's run (audited; stream it while it runs).")
    verdict: str = Field(description="first, second, tie, both_bad; empty until read or without a verdict line.")
    score_first: float | None
    score_second: float | None
    rationale: str
    error: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None = Field(description="USD; null without a price.")
    recorded: bool


class JudgedPairOut(Schema):
    turn: int
    columns: list[str]
    verdict: str = Field(description="In column terms: a (the left column of the pair), b, tie, both_bad; "
                                     "empty until both orders are read.")
    flipped: bool = Field(description="The verdict changed with the order (counted as a tie).")
    calls: list[JudgementOut]


class JudgingOut(Schema):
    id: int
    comparison_id: uuid.UUID
    agent_id: int | None
    agent_name: str
    model: str
    rubric_name: str
    rubric_text: str
    scale_max: int
    pass_threshold: int | None
    created_at: datetime
    total: int
    done: int
    complete: bool
    flips: int
    position_bias: dict = Field(description="first_wins, decisive, rate, low, high (Wilson 95 %), biased.")
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    pairs: list[JudgedPairOut]
    agreement: dict | None = Field(description="Against your votes, once complete (see results' evaluation).")


def _rubric_out(rubric: Rubric) -> dict:
    return {"id": rubric.pk, "key": None, "name": rubric.name, "text": rubric.text, "scale_max": rubric.scale_max,
            "pass_threshold": rubric.pass_threshold}


def _call_out(j) -> dict:
    return {"order": [COLUMN_LETTERS[j.first], COLUMN_LETTERS[j.second]], "run_id": j.run_id, "verdict": j.verdict,
            "score_first": j.score_first, "score_second": j.score_second, "rationale": j.rationale,
            "error": j.error, "prompt_tokens": j.prompt_tokens, "completion_tokens": j.completion_tokens,
            "cost": j.cost, "recorded": j.recorded_at is not None}


def judging_out(found, comparison: Comparison) -> dict:
    state = insights.judging_state(found)
    pairs = [{"turn": p["turn"], "columns": [COLUMN_LETTERS[p["x"]], COLUMN_LETTERS[p["y"]]], "verdict": p["verdict"],
              "flipped": p["flipped"], "calls": [_call_out(c) for c in (p["forward"], p["backward"]) if c]}
             for p in state["pairs"]]
    return {
        "id": found.pk, "comparison_id": comparison.pk, "agent_id": found.agent_id, "agent_name": found.agent_name,
        "model": found.model, "rubric_name": found.rubric_name, "rubric_text": found.rubric_text,
        "scale_max": found.scale_max, "pass_threshold": found.pass_threshold, "created_at": found.created_at,
        **{k: state[k] for k in ("total", "done", "complete", "flips", "position_bias", "prompt_tokens",
                                 "completion_tokens", "cost")},
        "pairs": pairs, "agreement": insights.comparison_agreement(comparison) if state["complete"] else None,
    }


@router.get("/rubrics/templates", response=answers({200: list[RubricOut]}))
def rubric_templates(request):
    """The rubric templates to copy and edit."""
    return [{"id": None, "key": key, **t} for key, t in judges.RUBRIC_TEMPLATES.items()]


@router.get("/rubrics", response=answers({200: list[RubricOut]}))
def list_rubrics(request):
    """Your rubrics, by name."""
    return [_rubric_out(r) for r in selectors.rubrics_of(request.auth)]


@router.post("/rubrics", response=answers({201: RubricOut}, *BODY))
def create_rubric(request, payload: RubricIn):
    """Save a rubric. 400 names every bad field (or a name you already use)."""
    return Status(201, _rubric_out(judging.rubric_save(owner=request.auth, **payload.dict())))


@router.put("/rubrics/{rubric_id}", response=answers({200: RubricOut}, *BODY, 404))
def update_rubric(request, rubric_id: str, payload: RubricIn):
    """Edit your rubric (judgings already started keep the text they were given)."""
    rubric = selectors.get_rubric_for(request.auth, rubric_id)
    return _rubric_out(judging.rubric_save(owner=request.auth, rubric=rubric, **payload.dict()))


def _judging_rubric(user, payload: JudgingIn) -> dict:
    if payload.rubric_id is not None:
        rubric = selectors.get_rubric_for(user, payload.rubric_id)
        return {"rubric_name": rubric.name, "rubric_text": rubric.text, "scale_max": rubric.scale_max,
                "pass_threshold": rubric.pass_threshold}
    if payload.template is not None:
        t = judges.RUBRIC_TEMPLATES.get(payload.template)
        if t is None:
            raise InvalidInput(f"template must be one of {', '.join(judges.RUBRIC_TEMPLATES)}")
        return {"rubric_name": t["name"], "rubric_text": t["text"], "scale_max": t["scale_max"],
                "pass_threshold": t["pass_threshold"]}
    return {"rubric_name": payload.rubric_name or "", "rubric_text": payload.rubric_text or "",
            "scale_max": payload.scale_max, "pass_threshold": payload.pass_threshold}


@router.post("/comparisons/{comparison_id}/judgings", response=answers({201: JudgingOut}, *BODY, 404, 409, 429))
@limit_run_creation
def start_judging(request, comparison_id: str, payload: JudgingIn):
    """Judge every pair of columns of every prompt whose answers are all in, in both orders, with
    ``agent_id`` under a rubric (``rubric_id``, a ``template``, or the fields). The judge calls are
    runs, queued now. 404: the comparison, agent or rubric is not yours; 409: no prompt has all its
    answers; 400: a bad rubric. Nothing is written on an error."""
    user = request.auth
    comparison = selectors.get_comparison_for(user, comparison_id)
    agent = _agent_for(user, payload.agent_id)
    found = judging.judging_start(comparison=comparison, agent=agent, **_judging_rubric(user, payload))
    return Status(201, judging_out(found, comparison))


@router.get("/comparisons/{comparison_id}/judgings", response=answers({200: list[JudgingOut]}, 404))
def list_judgings(request, comparison_id: str):
    """The comparison's judgings, newest first."""
    comparison = selectors.get_comparison_for(request.auth, comparison_id)
    return [judging_out(j, comparison) for j in comparison.judgings.all()]


@router.get("/comparisons/{comparison_id}/judgings/{judging_id}", response=answers({200: JudgingOut}, 404))
def get_judging(request, comparison_id: str, judging_id: str):
    """One judging: progress, per pair both calls (verdict, rationale, tokens, cost), flips,
    position bias and, once complete, agreement with your votes."""
    comparison = selectors.get_comparison_for(request.auth, comparison_id)
    return judging_out(insights.get_judging_for(request.auth, comparison, judging_id), comparison)


@router.get("/comparisons/{comparison_id}/agreement", response=answers({200: dict}, 404))
def comparison_agreement(request, comparison_id: str):
    """The newest judging against your votes on this comparison: n, agreement, kappa (with its 95 %
    interval), the confusion table (judge rows × your columns: A, B, tie, both bad), sentence."""
    return insights.comparison_agreement(selectors.get_comparison_for(request.auth, comparison_id))


# --- suites ------------------------------------------------------------------------------------------------

class SuiteIn(Schema):
    name: str = Field(description="1–100 characters, unique among your suites (ignoring case).")
    leaf_run_ids: list[uuid.UUID] = Field(min_length=1, max_length=50,
                                          description="The last run of each branch to keep (your runs).")
    references: bool = Field(True, description="Keep the answers the branches had as reference answers.")


class SuiteCaseOut(Schema):
    position: int
    title: str
    prompts: list[str]
    references: list[str]


class ChallengerOut(Schema):
    agent: dict
    wins: int
    losses: int
    ties: int
    win_rate: float | None
    ci_low: float | None = Field(description="Wilson 95 %.")
    ci_high: float | None
    rating: float = Field(description="Elo points against the baseline (Bradley–Terry of the two).")


class SuiteRunOut(Schema):
    id: int
    created_at: datetime
    agents: list[dict] = Field(description="id, name, model; the baseline first.")
    judge_id: int | None
    rubric_name: str
    comparison_ids: list[uuid.UUID] = Field(description="One comparison per case: vote there.")
    challengers: list[ChallengerOut]


class SuiteOut(Schema):
    id: int
    name: str
    created_at: datetime
    cases: list[SuiteCaseOut]
    runs: list[SuiteRunOut]
    trend: str = Field(description="Whether the newest run differs from the first (Fisher's exact test).")


class SuiteRunIn(Schema):
    agent_ids: list[int] = Field(default_factory=list, max_length=4, description="2–4 agents, the baseline first.")
    blind: bool = True
    judge: JudgingIn | None = Field(None, description="Judge every case once its answers are in "
                                                      "(agent_id and the rubric as for a judging).")


def _agent_for(user, agent_id) -> Agent:
    """An agent ``user`` may use (theirs or a shared one); NotFound otherwise, or for a bad id;
    InvalidInput when none is given."""
    if agent_id is None:
        raise InvalidInput("agent_id is required")
    return get_agent_for(user, agent_id)


def _suite_for(user, suite_id):
    return selectors.get_suite_for(user, suite_id)


def suite_out(suite) -> dict:
    rows = insights.suite_runs(suite)
    ids = selectors.suite_comparison_ids(suite)
    return {
        "id": suite.pk, "name": suite.name, "created_at": suite.created_at,
        "cases": [{"position": c.position, "title": c.title, "prompts": c.prompts, "references": c.references}
                  for c in suite.cases.all()],
        "runs": [{"id": r["run"].pk, "created_at": r["run"].created_at, "agents": r["agents"],
                  "judge_id": r["run"].judge_id, "rubric_name": r["run"].rubric_name,
                  "comparison_ids": ids.get(r["run"].pk, []), "challengers": r["challengers"]} for r in rows],
        "trend": insights.trend(rows)["sentence"],
    }


@router.get("/suites", response=answers({200: list[SuiteOut]}))
def list_suites(request):
    """Your suites with their cases, runs and trend."""
    return [suite_out(s) for s in selectors.suites_of(request.auth)]


@router.post("/suites", response=answers({201: SuiteOut}, *BODY, 404))
def create_suite(request, payload: SuiteIn):
    """Save branches as a suite: per branch its user turns (and answers as references). 404: a run
    is not yours; 400: no name, a name you already use, a branch without user turns."""
    leaves = [get_run_for(request.auth, pk) for pk in payload.leaf_run_ids]
    return Status(201, suite_out(suites.suite_save(owner=request.auth, name=payload.name, leaves=leaves,
                                                   references=payload.references)))


@router.get("/suites/{suite_id}", response=answers({200: SuiteOut}, 404))
def get_suite(request, suite_id: str):
    return suite_out(_suite_for(request.auth, suite_id))


@router.post("/suites/{suite_id}/runs", response=answers({201: SuiteOut}, *BODY, 404, 409, 429))
@limit_run_creation
def run_suite(request, suite_id: str, payload: SuiteRunIn):
    """Run the suite on 2–4 agents (the first the baseline): one comparison per case, replayed on
    each; with ``judge``, every case is judged once its answers are in. Nothing is written on an
    error."""
    user = request.auth
    suite = _suite_for(user, suite_id)
    if not 2 <= len(payload.agent_ids) <= 4:
        raise InvalidInput("agent_ids: give 2 to 4 agents, the baseline first")
    agents = [_agent_for(user, pk) for pk in payload.agent_ids]
    judge, rubric = None, {}
    if payload.judge is not None:
        judge = _agent_for(user, payload.judge.agent_id)
        rubric = _judging_rubric(user, payload.judge)
    suites.suite_run_start(suite=suite, agents=agents, blind=payload.blind, judge=judge, **rubric)
    return Status(201, suite_out(suite))
