"""The JSON shapes of the comparisons API (:mod:`comparisons.api`): the django-ninja schemas of its
requests and answers, and the functions that turn a comparison, a judging and a suite (read through
:mod:`comparisons.selectors` and :mod:`comparisons.insights`) into them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from ninja import Field, Schema

from . import insights, selectors, trends
from .models import COLUMN_LETTERS, MAX_VARIANTS, MIN_VARIANTS, Comparison, Mode, Rubric, VoteChoice


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


class PassOut(Schema):
    k: int = Field(description="The comparison's samples per variant and prompt.")
    pass_k: float | None = Field(description="pass^k: the chance that all k answers to a prompt pass (mean over "
                                             "prompts of C(passes, k)/C(k, k)); null without a fully scored prompt.")
    pass_1: float | None = Field(description="The share of scored answers that pass.")
    prompts: int = Field(description="Prompts with all k answers scored.")


class RepeatOut(Schema):
    letter: str
    label: str | None = Field(description="null while the comparison is blind.")
    answers: int
    length: dict = Field(description="n, mean, sd, min, max of the answers' characters.")
    length_mean: dict = Field(description="mean, se, low, high (95 %, clustered by prompt), n, clusters.")
    scores: dict = Field(description="n, mean, sd, min, max of the newest judging's scores of the voted answers.")
    passes: PassOut | None = Field(description="pass^k from the newest judging; null without a pass threshold.")


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
    repeats: list[RepeatOut] | None = Field(None, description="With samples > 1: per column the spread of its "
                                                              "answers and pass^k.")


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


def cell_out(cell: dict) -> dict:
    run = cell["run"]
    return {
        "column": cell["index"], "letter": cell["letter"], "run_id": run.pk if run else None,
        "status": run.status if run else None, "active": cell["active"], "answer": cell["answer"],
        "error": (run.error_message or None) if run else None, "stopped": cell["stopped"], "metrics": cell["metrics"],
    }


def column_out(column: dict) -> dict:
    variant, last = column["variant"], column["last_run"]
    return {
        "column": column["index"], "letter": column["letter"], "last_run_id": last.pk if last else None,
        "variant": variant and {"label": variant.label, "model": variant.model_name, "agent_id": variant.agent_id,
                                "config": variant.config},
    }


def turn_out(turn: dict) -> dict:
    vote = turn["vote"]
    return {
        "turn": turn["index"], "prompt": turn["prompt"], "complete": turn["complete"],
        "cells": [cell_out(c) for c in turn["cells"]],
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
        "columns": [column_out(c) for c in state["columns"]], "turns": [turn_out(t) for t in state["turns"]],
        "totals": state["totals"], "stalled": state["stalled"], "voting_finished": state["voting_finished"],
        "can_reveal": state["can_reveal"],
        "repeats": trends.repeat_stats(comparison) if comparison.samples > 1 else None,
    }


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
    pass_k: dict[str, PassOut] = Field(description="Column letter → pass^k over the repeats, with a pass "
                                                   "threshold (the judge scores every repeat); else empty.")


def rubric_out(rubric: Rubric) -> dict:
    return {"id": rubric.pk, "key": None, "name": rubric.name, "text": rubric.text, "scale_max": rubric.scale_max,
            "pass_threshold": rubric.pass_threshold}


def call_out(j) -> dict:
    return {"order": [COLUMN_LETTERS[j.first], COLUMN_LETTERS[j.second]], "run_id": j.run_id, "verdict": j.verdict,
            "score_first": j.score_first, "score_second": j.score_second, "rationale": j.rationale,
            "error": j.error, "prompt_tokens": j.prompt_tokens, "completion_tokens": j.completion_tokens,
            "cost": j.cost, "recorded": j.recorded_at is not None}


def judging_out(found, comparison: Comparison) -> dict:
    state = insights.judging_state(found)
    pairs = [{"turn": p["turn"], "columns": [COLUMN_LETTERS[p["x"]], COLUMN_LETTERS[p["y"]]], "verdict": p["verdict"],
              "flipped": p["flipped"], "calls": [call_out(c) for c in (p["forward"], p["backward"]) if c]}
             for p in state["pairs"]]
    return {
        "id": found.pk, "comparison_id": comparison.pk, "agent_id": found.agent_id, "agent_name": found.agent_name,
        "model": found.model, "rubric_name": found.rubric_name, "rubric_text": found.rubric_text,
        "scale_max": found.scale_max, "pass_threshold": found.pass_threshold, "created_at": found.created_at,
        **{k: state[k] for k in ("total", "done", "complete", "flips", "position_bias", "prompt_tokens",
                                 "completion_tokens", "cost")},
        "pairs": pairs, "agreement": insights.comparison_agreement(comparison) if state["complete"] else None,
        "pass_k": {COLUMN_LETTERS[c]: p for c, p in trends.pass_at_k(comparison, found).items()},
    }


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


class TrendPointOut(Schema):
    suite_run: int = Field(description="The suite run's position, oldest first (0-based).")
    win_rate: float
    ci_low: float = Field(description="Wilson 95 %.")
    ci_high: float
    decisive: int = Field(description="Pairs with a winner (ties and both bad left out).")


class TrendSeriesOut(Schema):
    agent: dict = Field(description="id, name, model of the challenger.")
    points: list[TrendPointOut] = Field(description="Its runs with decisive verdicts.")
    sentence: str


class SuiteOut(Schema):
    id: int
    name: str
    created_at: datetime
    cases: list[SuiteCaseOut]
    runs: list[SuiteRunOut]
    trend: str = Field(description="Per challenger, whether its newest run differs from its first (Fisher's "
                                   "exact test).")
    trend_series: list[TrendSeriesOut] = Field(description="The trend chart: one series per challenger agent.")


class SuiteRunIn(Schema):
    agent_ids: list[int] = Field(default_factory=list, max_length=4, description="2–4 agents, the baseline first.")
    blind: bool = True
    judge: JudgingIn | None = Field(None, description="Judge every case once its answers are in "
                                                      "(agent_id and the rubric as for a judging).")


def suite_out(suite) -> dict:
    rows = trends.suite_runs(suite)
    ids = selectors.suite_comparison_ids(suite)
    return {
        "id": suite.pk, "name": suite.name, "created_at": suite.created_at,
        "cases": [{"position": c.position, "title": c.title, "prompts": c.prompts, "references": c.references}
                  for c in suite.cases.all()],
        "runs": [{"id": r["run"].pk, "created_at": r["run"].created_at, "agents": r["agents"],
                  "judge_id": r["run"].judge_id, "rubric_name": r["run"].rubric_name,
                  "comparison_ids": ids.get(r["run"].pk, []), "challengers": r["challengers"]} for r in rows],
        "trend": trends.trend(rows)["sentence"], "trend_series": trends.trend_series(rows),
    }
