"""Reads of comparisons, shared by the pages (:mod:`comparisons.views`) and the JSON API
(:mod:`comparisons.api`): the owner's comparison, the side-by-side state with per-cell metrics,
whether voting is over, and the results over a filtered set of comparisons.

Blind comparisons: until the labels are visible (:attr:`Comparison.labels_visible`) the state
holds nothing identifying a variant: no label, model, configuration or cost (the price would tell
the model), only column letters in the shuffled column order.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef
from django.db.models.fields.json import KT

from connections.models import DEFAULT_NAME as DEFAULT_CONNECTION_NAME
from connections.selectors import cost_of, object_id, prices_for
from conversations.models import ACTIVE_STATUSES, Message, Run
from core.dates import parse_day, within_days
from core.errors import InvalidInput, NotFound
from core.ids import parse_id
from core.text import clean_text
from memory.models import Agent
from memory.selectors import agents_for

from . import insights, stats
from .models import (
    COLUMN_LETTERS,
    Comparison,
    Rubric,
    Suite,
    Tag,
    Variant,
    VariantRun,
    Vote,
    VoteChoice,
    VoteRank,
)

# --- lookups ---------------------------------------------------------------------------------------

def get_comparison_for(user, comparison_id) -> Comparison:
    """``user``'s comparison (session and branch point selected); NotFound for another user's, an
    unknown or a malformed id."""
    pk = parse_id(comparison_id, "comparison")
    comparison = (
        Comparison.objects.owned_by(user).select_related("session", "branch_point").filter(pk=pk).first()
    )
    if comparison is None:
        raise NotFound("No such comparison.")
    return comparison


def check_turn(comparison: Comparison, turn: int) -> int:
    """``turn`` when it is a prompt of ``comparison`` (0-based); NotFound otherwise."""
    if not 0 <= turn < comparison.turn_count:
        raise NotFound("No such prompt in this comparison.")
    return turn


def turn_runs(comparison: Comparison, turn: int) -> dict[int, Run]:
    """variant position → its run for ``turn`` (variants whose turn has not started are absent)."""
    rows = VariantRun.objects.filter(variant__comparison=comparison, turn=turn).select_related("run", "variant")
    return {row.variant.position: row.run for row in rows}


def voting_finished(comparison: Comparison) -> bool:
    """Every prompt that can get a vote has one, and no run is still to come: each variant has a
    finished run for every turn or has stopped (a replayed turn failed), and every turn whose runs
    all finished is voted."""
    rows = VariantRun.objects.filter(variant__comparison=comparison).values_list("variant_id", "turn", "run__status")
    voted = set(Vote.objects.filter(comparison=comparison).values_list("turn", flat=True))
    return _voting_over(comparison, list(comparison.variants.all()), list(rows), voted)


def _voting_over(comparison: Comparison, variants: list[Variant], rows: list[tuple[int, int, str]],
                 voted: set[int]) -> bool:
    """:func:`voting_finished` over loaded rows: ``rows`` (variant id, turn, run status) of every
    VariantRun, ``voted`` the turns with a vote."""
    if any(status in ACTIVE_STATUSES for _, _, status in rows):
        return False
    turns_of = Counter(variant_id for variant_id, _, _ in rows)
    for variant in variants:
        if turns_of[variant.pk] < comparison.turn_count and not variant.stopped_reason:
            return False  # a replayed turn is still to start
    per_turn = Counter(turn for _, turn, _ in rows)
    votable = {turn for turn, count in per_turn.items() if count == len(comparison.column_order)}
    return votable <= voted


# --- the side-by-side state ------------------------------------------------------------------------

def run_metrics(run: Run, prices: dict | None = None) -> dict:
    """A finished run's ``prompt_tokens`` and ``completion_tokens``, ``ttft`` (seconds to first
    token), ``latency`` (seconds in total) and ``cost`` in USD (None when its model has no price on
    its connection or in ``ARBOR_MODEL_PRICES``, see :mod:`connections.selectors`). ``prices``:
    :func:`connections.selectors.prices_for` of the page's runs (else one query)."""
    if prices is not None and (run.connection_id, run.model) in prices:
        price = prices[(run.connection_id, run.model)]
        cost = None if price is None or None in (run.prompt_tokens, run.completion_tokens) else price.cost(
            run.prompt_tokens, run.completion_tokens)
    else:
        cost = cost_of(run.connection_id, run.model, run.prompt_tokens, run.completion_tokens)
    return {
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "ttft": run.time_to_first_token_seconds(),
        "latency": run.latency_seconds(),
        "cost": cost,
    }


def _load(comparison: Comparison) -> dict:
    """Variants, runs, answers and votes of ``comparison`` in a fixed number of queries."""
    variants = {v.position: v for v in comparison.variants.all()}
    position_of = {v.pk: p for p, v in variants.items()}
    rows = VariantRun.objects.filter(variant__comparison=comparison).select_related("run")
    runs: dict[tuple[int, int], Run] = {(row.turn, position_of[row.variant_id]): row.run for row in rows}
    answers = dict(
        Message.objects.filter(run__in=[r.pk for r in runs.values()], position=1, role="assistant")
        .values_list("run_id", "content")
    )
    votes = {v.turn: v for v in Vote.objects.filter(comparison=comparison).prefetch_related("ranks")}
    prices = prices_for((r.connection_id, r.model) for r in runs.values())
    return {"variants": variants, "position_of": position_of, "runs": runs, "answers": answers, "votes": votes,
            "prices": prices}


def cell_state(comparison: Comparison, turn: int, index: int, variant: Variant, run: Run | None,
               answer: str | None, prices: dict | None = None) -> dict:
    """One cell (a column's answer to one prompt): ``turn``, ``index`` (column), ``letter``,
    ``run`` (None before it starts), ``answer``, ``active`` (still running), ``metrics`` (see
    :func:`run_metrics`, once finished; no cost while blind) and ``stopped`` (why a replayed turn
    will not start, else "")."""
    cell = {"turn": turn, "index": index, "letter": COLUMN_LETTERS[index], "run": run, "answer": answer,
            "active": run is not None and run.status in ACTIVE_STATUSES, "metrics": None, "stopped": ""}
    if run is not None and not cell["active"]:
        cell["metrics"] = run_metrics(run, prices)
        if not comparison.labels_visible:
            cell["metrics"]["cost"] = None  # the price would tell the model
    if run is None:
        cell["stopped"] = variant.stopped_reason
    return cell


def one_cell(comparison: Comparison, turn: int, column: int) -> dict:
    """The cell of prompt ``turn`` in column ``column`` (both 0-based); NotFound outside the board."""
    if not (0 <= turn < comparison.turn_count and 0 <= column < len(comparison.column_order)):
        raise NotFound("No such cell.")
    variant = comparison.variants.get(position=comparison.column_order[column])
    row = VariantRun.objects.filter(variant=variant, turn=turn).select_related("run").first()
    run = row.run if row else None
    answer = None
    if run is not None:
        answer = run.messages.filter(position=1, role="assistant").values_list("content", flat=True).first()
    return cell_state(comparison, turn, column, variant, run, answer)


def _vote_state(comparison: Comparison, data: dict, vote: Vote | None) -> dict | None:
    """A cast vote: ``vote`` (the row) and ``ranking`` (``letter``, ``rank``, ``label`` once
    visible), best first; the choice is in column letters (A = the first column)."""
    if vote is None:
        return None
    column_of = {position: index for index, position in enumerate(comparison.column_order)}
    by_position = {data["position_of"][r.variant_id]: r.rank for r in vote.ranks.all()}
    ranking = sorted(
        ({"letter": COLUMN_LETTERS[column_of[p]], "rank": rank,
          "label": data["variants"][p].label if comparison.labels_visible else None}
         for p, rank in by_position.items()),
        key=lambda item: (item["rank"], item["letter"]),
    )
    return {"vote": vote, "ranking": ranking}


def _turns(comparison: Comparison, data: dict) -> list[dict]:
    turns = []
    for turn, prompt in enumerate(comparison.prompts):
        cells = []
        for index, position in enumerate(comparison.column_order):
            run = data["runs"].get((turn, position))
            answer = data["answers"].get(run.pk) if run is not None else None
            cells.append(cell_state(comparison, turn, index, data["variants"][position], run, answer,
                                    data["prices"]))
        complete = all(c["run"] is not None and not c["active"] for c in cells)
        turns.append({"index": turn, "number": turn + 1, "prompt": prompt, "cells": cells, "complete": complete,
                      "vote": _vote_state(comparison, data, data["votes"].get(turn))})
    return turns


def _totals(comparison: Comparison, turns: list[dict]) -> list[dict]:
    """Per column: finished ``turns``, summed tokens and ``latency`` (s), ``cost`` (None if unpriced)."""
    totals = []
    for index in range(len(comparison.column_order)):
        metrics = [t["cells"][index]["metrics"] for t in turns if t["cells"][index]["metrics"]]
        total = {
            "letter": COLUMN_LETTERS[index], "turns": len(metrics),
            "prompt_tokens": 0, "completion_tokens": 0, "latency": 0.0, "cost": None,
        }
        for m in metrics:
            total["prompt_tokens"] += m["prompt_tokens"] or 0
            total["completion_tokens"] += m["completion_tokens"] or 0
            total["latency"] += m["latency"] or 0.0
            if m["cost"] is not None:
                total["cost"] = (total["cost"] or 0.0) + m["cost"]
        totals.append(total)
    return totals


def board(comparison: Comparison) -> dict:
    """The side-by-side state of ``comparison``, as the detail page and the API show it:

    - ``columns``: per column ``index``, ``letter``, ``variant`` (None while blind) and
      ``last_run`` (the variant's deepest run; None while blind or before its first run);
    - ``turns``: per prompt ``index``, ``number``, ``prompt``, ``cells`` (:func:`cell_state`),
      ``complete`` (every cell finished) and ``vote`` (None until cast);
    - ``totals``: per column (see :func:`_totals`); ``tags``: names;
    - ``stalled``: a turn is neither started nor stopped while nothing runs (resume it);
    - ``voting_finished`` (:func:`voting_finished`) and ``can_reveal`` (blind, not revealed, a
      variant stopped early and voting is over).
    """
    data = _load(comparison)
    columns = [{"index": i, "letter": COLUMN_LETTERS[i],
                "variant": data["variants"][p] if comparison.labels_visible else None}
               for i, p in enumerate(comparison.column_order)]
    turns = _turns(comparison, data)
    for column, position in zip(columns, comparison.column_order, strict=True):
        mine = [run for (_, p), run in data["runs"].items() if p == position]
        last = max(mine, key=lambda r: r.depth) if mine else None
        column["last_run"] = last if comparison.labels_visible else None
    cells = [c for t in turns for c in t["cells"]]
    stalled = any(c["run"] is None and not c["stopped"] for c in cells) and not any(c["active"] for c in cells)
    variants = list(data["variants"].values())
    rows = [(data["variants"][p].pk, turn, run.status) for (turn, p), run in data["runs"].items()]
    finished = _voting_over(comparison, variants, rows, set(data["votes"]))
    return {
        "comparison": comparison, "columns": columns, "turns": turns, "totals": _totals(comparison, turns),
        "tags": list(comparison.tags.values_list("name", flat=True)), "stalled": stalled,
        "voting_finished": finished,
        "can_reveal": comparison.blind and comparison.revealed_at is None and finished
        and any(c["stopped"] for c in cells),
    }


# --- results -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResultFilters:
    """The filters of the results: ``tag`` (a tag name, lower case; "" for any), ``since`` and
    ``until`` (dates, both included, in the current time zone; None for open)."""

    tag: str = ""
    since: date | None = None
    until: date | None = None
    by: str = "configuration"  # one of GROUPINGS

    def as_json(self) -> dict:
        return {"tag": self.tag or None, "since": self.since and self.since.isoformat(),
                "until": self.until and self.until.isoformat(), "by": self.by}


GROUPINGS = ("configuration", "model")  # results per configuration, or per connection · model


def result_filters(*, tag: str | None = None, since: str | None = None, until: str | None = None,
                   by: str | None = None) -> ResultFilters:
    """The filters from the query string (``?tag=&since=YYYY-MM-DD&until=YYYY-MM-DD``), as the
    results page, its CSV and JSON downloads and the API read them. Raises InvalidInput naming
    every malformed field (a date that is not YYYY-MM-DD, a tag with a control character or over
    50 characters)."""
    errors = []
    try:
        tag = clean_text(tag or "", field="tag", max_length=50, required=False).lower()
    except InvalidInput as exc:
        errors.append(exc.message)
        tag = ""
    dates = {}
    for name, raw in (("since", since), ("until", until)):
        try:
            dates[name] = parse_day(raw, field=name)
        except InvalidInput as exc:
            errors.append(exc.message)
    by = (by or "configuration").strip()
    if by not in GROUPINGS:
        errors.append(f"by must be one of {', '.join(GROUPINGS)}")
    if errors:
        raise InvalidInput("; ".join(errors))
    return ResultFilters(tag=tag, by=by, **dates)


def counted_comparisons(user, filters: ResultFilters):
    """``user``'s comparisons that count in the results: filtered, and blind ones only once revealed."""
    qs = Comparison.objects.owned_by(user).exclude(blind=True, revealed_at__isnull=True)
    if filters.tag:
        qs = qs.filter(tags__name=filters.tag)
    return within_days(qs, filters.since, filters.until)


def compute_results(comparisons, *, by: str = "configuration") -> dict:
    """Per configuration (``by="configuration"``) or per connection and model (``by="model"``:
    every configuration on the same connection and model counts as one) over ``comparisons`` (a
    queryset), in three queries whatever the number of votes: ``{"results": [stats.ConfigResult],
    "comparisons": int, "votes": int, "by": str}`` (see :mod:`comparisons.stats`)."""
    ids = comparisons.values("pk")
    labels: dict[str, Counter] = defaultdict(Counter)
    models: dict[str, str] = {}
    connections: dict[str, str] = {}
    named = (
        Variant.objects.filter(comparison__in=ids).values("config_key", "label")
        .annotate(n=Count("pk"), model=Max(KT("config__model")), connection=Max(KT("config__connection")))
        .order_by()
    )
    for row in named:
        labels[row["config_key"]][row["label"]] += row["n"]
        models[row["config_key"]] = row["model"] or settings.ARBOR_MODEL
        connections[row["config_key"]] = row["connection"] or DEFAULT_CONNECTION_NAME

    def group(key: str) -> str:
        return key if by != "model" else f"{connections[key]} · {models[key]}"

    grouped: dict[str, Counter] = defaultdict(Counter)
    for key, counts in labels.items():
        grouped[group(key)].update(counts)
    any_key = {group(key): key for key in labels}
    configs = {g: {"label": g if by == "model" else counts.most_common(1)[0][0], "labels": sorted(counts),
                   "model": models[any_key[g]], "connection": connections[any_key[g]]}
               for g, counts in grouped.items()}
    votes: dict[int, dict] = {}
    for vote_id, choice, key, rank in VoteRank.objects.filter(vote__comparison__in=ids).values_list(
        "vote_id", "vote__choice", "variant__config_key", "rank"
    ).order_by("vote_id"):
        entry = votes.setdefault(vote_id, {"ranks": [], "both_bad": choice == VoteChoice.BOTH_BAD})
        entry["ranks"].append((group(key), rank))
    results = stats.aggregate(list(votes.values()), configs)
    return {"results": results, "comparisons": comparisons.count(), "votes": len(votes), "by": by}


EXPORT_FIELDS = ["key", "label", "connection", "model", "labels", "votes", "games", "wins", "losses", "ties",
                 "both_bad", "decisive", "win_rate", "ci_low", "ci_high", "theta", "rating"]


def results_json(filters: ResultFilters, data: dict) -> dict:
    """The JSON download of the results (page and API): the filters, counts, how the figures are
    computed and one object per configuration with :data:`EXPORT_FIELDS`, best rating first."""
    extra = insights.evaluation_columns(data.get("evaluation", {}))
    return {
        "filters": filters.as_json(),
        "comparisons": data["comparisons"],
        "votes": data["votes"],
        "confidence": stats.CONFIDENCE,
        "win_rate": "wins / (wins + losses) over pairwise games; Wilson score interval",
        "rating": f"Bradley-Terry, penalised maximum likelihood (alpha={stats.BT_ALPHA}), on the Elo scale",
        "configurations": [{**{k: r.as_dict()[k] for k in EXPORT_FIELDS}, **extra[r.key]} for r in data["results"]],
        **({"evaluation": insights.evaluation_json(data["evaluation"])} if "evaluation" in data else {}),
    }


def write_results_csv(out, data: dict) -> None:
    """The CSV download of the results into ``out`` (a text file): a header of
    :data:`EXPORT_FIELDS`, then one row per configuration; ``labels`` joined by ``|``, None empty."""
    writer = csv.writer(out)
    fields = EXPORT_FIELDS + (insights.EVALUATION_FIELDS if "evaluation" in data else [])
    extra = insights.evaluation_columns(data.get("evaluation", {}))
    writer.writerow(fields)
    for r in data["results"]:
        row = {**r.as_dict(), **extra[r.key]}
        row["labels"] = "|".join(row["labels"])
        writer.writerow(["" if row[f] is None else row[f] for f in fields])


def results_filename(ext: str) -> str:
    return f"arbor-comparison-results-{date.today().isoformat()}.{ext}"


# --- the pages' lists ------------------------------------------------------------------------------

def comparisons_of(user):
    """``user``'s comparisons, newest first, tags and variants prefetched: a QuerySet."""
    return Comparison.objects.owned_by(user).order_by("-created_at").prefetch_related("tags", "variants")


def index_rows(user, limit: int = 100) -> list[dict]:
    """The comparisons page: ``[{"comparison", "votes"}]`` of ``user``'s newest ``limit``
    comparisons (session selected) with the number of votes cast on each (two queries)."""
    comparisons = list(comparisons_of(user).select_related("session")[:limit])
    voted = Counter(
        Vote.objects.filter(comparison__in=[c.pk for c in comparisons]).values_list("comparison_id", flat=True)
    )
    return [{"comparison": c, "votes": voted.get(c.pk, 0)} for c in comparisons]


def tag_names(user):
    """The names of ``user``'s tags: a QuerySet of strings."""
    return Tag.objects.filter(owner=user).values_list("name", flat=True)


def leaves_below(session, branch_point: Run, limit: int = 30) -> list[tuple[Run, str]]:
    """``[(leaf, its input)]``: the leaves of the branches below ``branch_point`` in ``session``'s
    tree, newest first (at most ``limit``; three queries)."""
    below = session.visible_runs().filter(pk__in=Run.objects.descendant_of(branch_point).values("pk"))
    leaves = below.exclude(pk__in=Run.objects.filter(parent_run__in=below).values("parent_run_id"))
    leaves = list(leaves.order_by("-created_at")[:limit])
    inputs = dict(Message.objects.filter(run__in=leaves, position=0).values_list("run_id", "content"))
    return [(leaf, inputs.get(leaf.pk) or "") for leaf in leaves]


def opening_messages(run: Run) -> list[Message]:
    """The run's input and its first answer (positions 0 and 1)."""
    return list(run.messages.filter(position__in=(0, 1)).order_by("position"))


# --- judges and suites -----------------------------------------------------------------------------

def judge_agents(user):
    """The agents ``user`` may pick as a judge or a suite's variant (own and shared, not those
    comparisons made), by name: a QuerySet."""
    return agents_for(user)


def pickable_agent(user, agent_id) -> Agent:
    """One of :func:`judge_agents`; NotFound for another user's, an unknown or a malformed id."""
    agent = agents_for(user).filter(pk=object_id(agent_id, "agent")).first()
    if agent is None:
        raise NotFound("No such agent.")
    return agent


def rubrics_of(user):
    """``user``'s rubrics, by name: a QuerySet."""
    return Rubric.objects.filter(owner=user)


def get_rubric_for(user, rubric_id) -> Rubric:
    """``user``'s rubric; NotFound for another user's, an unknown or a malformed id."""
    rubric = rubrics_of(user).filter(pk=object_id(rubric_id, "rubric")).first()
    if rubric is None:
        raise NotFound("No such rubric.")
    return rubric


def suites_of(user):
    """``user``'s suites, each with ``n_cases`` and ``n_runs`` counted: a QuerySet."""
    return Suite.objects.filter(owner=user).annotate(n_cases=Count("cases", distinct=True),
                                                     n_runs=Count("runs", distinct=True))


def get_suite_for(user, suite_id) -> Suite:
    """``user``'s suite; NotFound for another user's, an unknown or a malformed id."""
    suite = Suite.objects.filter(owner=user, pk=object_id(suite_id, "suite")).first()
    if suite is None:
        raise NotFound("No such suite.")
    return suite


def suite_comparison_ids(suite: Suite) -> dict[int, list]:
    """suite run id → the ids of its comparisons, in case order (one query)."""
    ids: dict = {}
    rows = (Comparison.objects.filter(suite_run__suite=suite).order_by("suite_case__position")
            .values_list("pk", "suite_run_id"))
    for pk, run_id in rows:
        ids.setdefault(run_id, []).append(pk)
    return ids


def branch_leaves(user, limit: int = 40) -> list[tuple[Run, str]]:
    """``[(leaf, its first prompt)]``: the newest leaves of ``user``'s branches (finished runs
    without children, not a judge's or a suite's own runs), session selected (two queries)."""
    leaves = list(
        Run.objects.filter(session__owner=user, session__deleted_at__isnull=True, judgement__isnull=True,
                           comparison_turn__variant__comparison__suite_run__isnull=True)
        .exclude(status__in=ACTIVE_STATUSES).filter(~Exists(Run.objects.filter(parent_run=OuterRef("pk"))))
        .select_related("session").order_by("-created_at")[:limit])
    prompts = dict(Message.objects.filter(run__in=leaves, position=0).values_list("run_id", "content"))
    return [(leaf, prompts.get(leaf.pk) or "") for leaf in leaves]
