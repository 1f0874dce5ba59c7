"""Pages of comparisons: start form, side-by-side columns, votes, results (+ CSV/JSON export).

Function views; HTMX partials (``template#partial``); every view checks ownership itself and
answers 404 for other users' comparisons, sessions and runs.

Blind comparisons: until every prompt has a vote, nothing identifying a variant is rendered: not
its label, model, system prompt, agent, cost or database id. Columns are addressed by their
(shuffled) column index, runs by their random UUIDs.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.contrib import messages as flash
from django.db.models import Count, Max
from django.db.models.fields.json import KT
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.ratelimit import limit_run_creation
from connections.models import DEFAULT_NAME as DEFAULT_CONNECTION_NAME
from connections.selectors import cost_of, pickable_models, prices_for
from conversations import services as conv
from conversations.models import ACTIVE_STATUSES, Message, Run
from conversations.selectors import get_run_for, get_session_for
from core.errors import ArborError

from . import services, stats
from .forms import ComparisonForm, variant_forms
from .models import COLUMN_LETTERS, Comparison, Mode, Tag, Variant, VariantRun, Vote, VoteChoice, VoteRank

CELL_DONE_EVENT = "compareCellDone"


# --- lookups ---------------------------------------------------------------------------------------

def _comparison_or_404(request, comparison_id) -> Comparison:
    comparison = (
        Comparison.objects.owned_by(request.user)
        .select_related("session", "branch_point")
        .filter(pk=comparison_id)
        .first()
    )
    if comparison is None:
        raise Http404("No such comparison.")
    return comparison


# --- metrics ---------------------------------------------------------------------------------------

def run_metrics(run: Run, prices: dict | None = None) -> dict:
    """A finished run's tokens, seconds to first token and in total, and cost in USD (None when
    its model has no price on its connection or in ``ARBOR_MODEL_PRICES``, see :mod:`connections.selectors`).
    ``prices``: :func:`connections.selectors.prices_for` of the page's runs (else one query)."""
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


# --- the side-by-side page -----------------------------------------------------------------------

def _load(comparison: Comparison) -> dict:
    """Everything the detail page shows, in a fixed number of queries."""
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


def _column(comparison: Comparison, index: int, variant: Variant) -> dict:
    return {"index": index, "letter": COLUMN_LETTERS[index], "variant": variant if comparison.labels_visible else None}


def _cell(comparison, turn: int, index: int, variant: Variant, run: Run | None, answer: str | None,
          prices: dict | None = None) -> dict:
    cell = {"turn": turn, "index": index, "letter": COLUMN_LETTERS[index], "run": run, "answer": answer,
            "active": run is not None and run.status in ACTIVE_STATUSES, "metrics": None, "stopped": ""}
    if run is not None and not cell["active"]:
        cell["metrics"] = run_metrics(run, prices)
        if not comparison.labels_visible:
            cell["metrics"]["cost"] = None  # the price would tell the model
    if run is None:
        cell["stopped"] = variant.stopped_reason
    return cell


def _turns(comparison: Comparison, data: dict) -> list[dict]:
    turns = []
    for turn, prompt in enumerate(comparison.prompts):
        cells = []
        for index, position in enumerate(comparison.column_order):
            run = data["runs"].get((turn, position))
            answer = data["answers"].get(run.pk) if run is not None else None
            cells.append(_cell(comparison, turn, index, data["variants"][position], run, answer, data["prices"]))
        complete = all(c["run"] is not None and not c["active"] for c in cells)
        turns.append({"index": turn, "number": turn + 1, "prompt": prompt, "cells": cells, "complete": complete,
                      "vote": _vote_view(comparison, data, data["votes"].get(turn))})
    return turns


def _vote_view(comparison: Comparison, data: dict, vote: Vote | None) -> dict | None:
    """A cast vote as the page shows it: the choice in column letters; labels once visible."""
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


def _totals(comparison: Comparison, turns: list[dict]) -> list[dict]:
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


def _detail_context(comparison: Comparison) -> dict:
    data = _load(comparison)
    columns = [_column(comparison, i, data["variants"][p]) for i, p in enumerate(comparison.column_order)]
    turns = _turns(comparison, data)
    last_runs = []
    for position in comparison.column_order:
        mine = [run for (turn, p), run in data["runs"].items() if p == position]
        last_runs.append(max(mine, key=lambda r: r.depth) if mine else None)
    for column, last in zip(columns, last_runs, strict=True):
        column["last_run"] = last if comparison.labels_visible else None
    stalled = any(
        t["cells"][i]["run"] is None and not t["cells"][i]["stopped"]
        for t in turns for i in range(len(columns))
    ) and not any(c["active"] for t in turns for c in t["cells"])
    return {
        "comparison": comparison, "session": comparison.session, "columns": columns, "turns": turns,
        "totals": _totals(comparison, turns), "choices": VoteChoice, "two": len(columns) == 2,
        "rank_options": range(1, len(columns) + 1), "stalled": stalled, "cell_event": CELL_DONE_EVENT,
        "tags": list(comparison.tags.values_list("name", flat=True)),
        "can_reveal": comparison.blind and comparison.revealed_at is None and any(
            c["stopped"] for t in turns for c in t["cells"]) and services.voting_finished(comparison),
    }


@require_GET
def detail(request: HttpRequest, comparison_id) -> HttpResponse:
    comparison = _comparison_or_404(request, comparison_id)
    context = _detail_context(comparison)
    if request.htmx and not request.htmx.boosted:
        return render(request, "comparisons/detail.html#board", context)
    return render(request, "comparisons/detail.html", context)


@require_GET
def cell(request: HttpRequest, comparison_id, turn: int, column: int) -> HttpResponse:
    """One column of one prompt: streaming, waiting for its turn, or finished with its metrics."""
    comparison = _comparison_or_404(request, comparison_id)
    if not (0 <= turn < comparison.turn_count and 0 <= column < len(comparison.column_order)):
        raise Http404("No such cell.")
    position = comparison.column_order[column]
    variant = comparison.variants.get(position=position)
    row = VariantRun.objects.filter(variant=variant, turn=turn).select_related("run").first()
    run = row.run if row else None
    answer = None
    if run is not None:
        answer = run.messages.filter(position=1, role="assistant").values_list("content", flat=True).first()
    context = {"comparison": comparison, "session": comparison.session,
               "cell": _cell(comparison, turn, column, variant, run, answer)}
    response = render(request, "comparisons/detail.html#cell", context)
    if run is not None and run.status not in ACTIVE_STATUSES:
        response["HX-Trigger"] = CELL_DONE_EVENT
    return response


@require_http_methods(["GET", "POST"])
def vote(request: HttpRequest, comparison_id, turn: int) -> HttpResponse:
    """GET: the vote panel of one prompt (partial). POST: cast the vote, then back to the page."""
    comparison = _comparison_or_404(request, comparison_id)
    if not 0 <= turn < comparison.turn_count:
        raise Http404("No such prompt.")
    url = reverse("comparisons:detail", kwargs={"comparison_id": comparison.pk})
    if request.method == "POST":
        n = len(comparison.column_order)
        ranking = None
        if request.POST.get("choice") == VoteChoice.RANKING:
            ranking = {i: request.POST.get(f"rank_{i}") for i in range(n)}
        try:
            services.vote_cast(comparison=comparison, turn=turn, choice=request.POST.get("choice", ""),
                               ranking=ranking, note=request.POST.get("note", ""))
        except ArborError as exc:
            if request.htmx:
                return HttpResponse(exc.message, status=exc.status)
            flash.error(request, exc.message)
            return redirect(f"{url}#turn-{turn + 1}")
        comparison.refresh_from_db()
        if comparison.blind and comparison.revealed_at is not None:
            flash.success(request, "Thanks: the labels are revealed.")
        if request.htmx:
            response = HttpResponse(status=204)
            response["HX-Redirect"] = f"{url}#turn-{turn + 1}"
            return response
        return redirect(f"{url}#turn-{turn + 1}")
    context = _detail_context(comparison)
    context["turn"] = context["turns"][turn]
    return render(request, "comparisons/detail.html#vote_panel", context)


@require_POST
def open_branch(request: HttpRequest, comparison_id, column: int) -> HttpResponse:
    """Continue a variant's branch in the chat: make its last run active, go to the session page."""
    comparison = _comparison_or_404(request, comparison_id)
    if not 0 <= column < len(comparison.column_order):
        raise Http404("No such column.")
    if not comparison.labels_visible:
        return HttpResponse("Vote first: opening the branch would show which variant it is.", status=409)
    position = comparison.column_order[column]
    last = (
        VariantRun.objects.filter(variant__comparison=comparison, variant__position=position).order_by("-turn").first()
    )
    if last is None:
        raise Http404("This variant has no run yet.")
    session = get_session_for(request.user, comparison.session_id)
    conv.session_set_active(session=session, run=last.run)
    return redirect("conversations:session_detail", session_id=session.pk)


@require_POST
def reveal(request: HttpRequest, comparison_id) -> HttpResponse:
    comparison = _comparison_or_404(request, comparison_id)
    try:
        services.comparison_reveal(comparison=comparison)
    except ArborError as exc:
        flash.error(request, exc.message)
    return redirect("comparisons:detail", comparison_id=comparison.pk)


@require_POST
@limit_run_creation
def resume(request: HttpRequest, comparison_id) -> HttpResponse:
    comparison = _comparison_or_404(request, comparison_id)
    started = services.comparison_resume(comparison=comparison)
    flash.info(request, f"Started {len(started)} waiting turn(s)." if started else "Nothing was waiting.")
    return redirect("comparisons:detail", comparison_id=comparison.pk)


# --- starting --------------------------------------------------------------------------------------

def _source_choices(session, branch_point: Run) -> list[tuple[str, str]]:
    """Leaves of the branches below ``branch_point`` in this session (newest first, at most 30)."""
    below = session.visible_runs().filter(pk__in=Run.objects.descendant_of(branch_point).values("pk"))
    leaves = below.exclude(pk__in=Run.objects.filter(parent_run__in=below).values("parent_run_id"))
    leaves = list(leaves.order_by("-created_at")[:30])
    inputs = dict(Message.objects.filter(run__in=leaves, position=0).values_list("run_id", "content"))
    choices = []
    for leaf in leaves:
        turns = leaf.depth - branch_point.depth
        text = " ".join((inputs.get(leaf.pk) or "").split())[:60]
        choices.append((str(leaf.pk), f"{turns} turn{'s' if turns != 1 else ''}, ending “{text}”"))
    return choices


def _start(request, form: ComparisonForm, vforms, session, branch_point: Run) -> tuple[Comparison | None, int]:
    """Start the comparison the valid forms describe: ``(comparison, 200)``, or ``(None, status)``
    with the service's refusal added to ``form``. Another user's source run is the 404 page."""
    source = None
    if form.cleaned_data["mode"] == Mode.REPLAY:
        source = get_run_for(request.user, form.cleaned_data["source_run"])
    try:
        comparison = services.comparison_start(
            owner=request.user, session=session, branch_point=branch_point,
            variants=[f.spec() for f in vforms if f.used], mode=form.cleaned_data["mode"],
            prompt=form.cleaned_data.get("prompt") or "", source_run=source,
            blind=form.cleaned_data["blind"], tags=form.cleaned_data.get("tags") or "",
        )
    except ArborError as exc:
        form.add_error(None, exc.message)
        return None, exc.status
    return comparison, 200


def _known_models(user) -> list[str]:
    """Model names to suggest: the models of the user's connections, those with a context window
    or a price, and the default model."""
    listed = set(pickable_models(user).values_list("name", flat=True))
    return sorted(set(getattr(settings, "ARBOR_MODEL_CONTEXT_WINDOWS", {})) | set(settings.ARBOR_MODEL_PRICES)
                  | {settings.ARBOR_MODEL} | listed)


@require_http_methods(["GET", "POST"])
@limit_run_creation
def new(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Start a comparison from a run of a session (the branch point)."""
    session = get_session_for(request.user, session_id)
    branch_point = get_run_for(request.user, run_id)
    if not session.can_branch_from(branch_point):
        raise Http404("That run is not part of this session.")
    choices = _source_choices(session, branch_point)
    status = 200
    if request.method == "POST":
        form = ComparisonForm(request.POST, source_choices=choices)
        vforms = variant_forms(request.POST, user=request.user)
        if not (form.is_valid() and all(f.is_valid() for f in vforms)):
            status = 400
        else:
            comparison, status = _start(request, form, vforms, session, branch_point)
            if comparison is not None:
                return redirect("comparisons:detail", comparison_id=comparison.pk)
    else:
        initial = {}
        active = session.active_run_id
        if active and any(value == str(active) for value, _ in choices):
            initial["source_run"] = str(active)
        form = ComparisonForm(initial=initial, source_choices=choices)
        vforms = variant_forms(user=request.user, initial_model=branch_point.model or settings.ARBOR_MODEL)
    bp_messages = list(branch_point.messages.filter(position__in=(0, 1)).order_by("position"))
    context = {"session": session, "branch_point": branch_point, "bp_messages": bp_messages, "form": form,
               "vforms": vforms, "letters": COLUMN_LETTERS, "known_models": _known_models(request.user)}
    return render(request, "comparisons/new.html", context, status=status)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    comparisons = (
        Comparison.objects.owned_by(request.user).select_related("session").prefetch_related("tags", "variants")
        .order_by("-created_at")[:100]
    )
    voted = Counter(
        Vote.objects.filter(comparison__in=[c.pk for c in comparisons]).values_list("comparison_id", flat=True)
    )
    rows = [{"comparison": c, "votes": voted.get(c.pk, 0)} for c in comparisons]
    return render(request, "comparisons/index.html", {"rows": rows})


# --- results ---------------------------------------------------------------------------------------

def _parse_filters(request) -> tuple[dict, list[str]]:
    errors = []
    filters = {"tag": (request.GET.get("tag") or "").strip().lower(), "since": None, "until": None,
               "by": (request.GET.get("by") or "configuration").strip()}
    if filters["by"] not in GROUPINGS:
        errors.append(f"by must be one of {', '.join(GROUPINGS)}")
    for name in ("since", "until"):
        raw = (request.GET.get(name) or "").strip()
        if raw:
            try:
                value = parse_date(raw)
            except ValueError:
                value = None
            if value is None:
                errors.append(f"{name} must be a date (YYYY-MM-DD)")
            filters[name] = value
    return filters, errors


def _filtered(request, filters: dict):
    """The owner's comparisons that count: filtered, and blind ones only once revealed."""
    qs = Comparison.objects.owned_by(request.user).exclude(blind=True, revealed_at__isnull=True)
    if filters["tag"]:
        qs = qs.filter(tags__name=filters["tag"])
    tz = timezone.get_current_timezone()
    if filters["since"]:
        qs = qs.filter(created_at__gte=datetime.combine(filters["since"], time.min, tzinfo=tz))
    if filters["until"]:
        qs = qs.filter(created_at__lt=datetime.combine(filters["until"] + timedelta(days=1), time.min, tzinfo=tz))
    return qs


GROUPINGS = ("configuration", "model")  # results per configuration, or per connection · model


def compute_results(comparisons, *, by: str = "configuration") -> dict:
    """Per configuration (``by="configuration"``) or per connection and model (``by="model"``:
    every configuration on the same connection and model counts as one) over ``comparisons`` (a
    queryset), in three queries whatever the number of votes: see :mod:`comparisons.stats`."""
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


def _chart(results: list[stats.ConfigResult]) -> dict:
    """Coordinates of a horizontal bar chart of win rates with their 95 % intervals (SVG units)."""
    left, width, row = 200, 420, 34
    bars = []
    for i, r in enumerate(results):
        y = 30 + i * row
        bar = {"y": y, "label": r.label, "n": r.decisive, "text_y": y + 14, "mid_y": y + 10, "rate": r.win_rate}
        if r.win_rate is not None:
            bar.update(width=round(r.win_rate * width, 1), x1=round(left + r.ci_low * width, 1),
                       x2=round(left + r.ci_high * width, 1), pct=f"{r.win_rate:.0%}",
                       pct_x=round(left + width + 8, 1))
        bars.append(bar)
    ticks = [{"x": left + width * t / 4, "label": f"{t * 25}%"} for t in range(5)]
    return {"bars": bars, "left": left, "width": width, "height": 40 + row * max(len(results), 1),
            "total_width": left + width + 100, "ticks": ticks, "half_x": left + width / 2}


@require_GET
def results(request: HttpRequest) -> HttpResponse:
    filters, errors = _parse_filters(request)
    if errors:
        return HttpResponse("; ".join(errors), status=400)
    data = compute_results(_filtered(request, filters), by=filters["by"])
    context = {**data, "filters": filters, "chart": _chart(data["results"]),
               "all_tags": Tag.objects.filter(owner=request.user).values_list("name", flat=True),
               "query": request.GET.urlencode(), "confidence": int(stats.CONFIDENCE * 100)}
    if request.htmx and not request.htmx.boosted:
        return render(request, "comparisons/results.html#table", context)
    return render(request, "comparisons/results.html", context)


EXPORT_FIELDS = ["key", "label", "connection", "model", "labels", "votes", "games", "wins", "losses", "ties",
                 "both_bad", "decisive", "win_rate", "ci_low", "ci_high", "theta", "rating"]


def _filename(ext: str) -> str:
    return f"arbor-comparison-results-{date.today().isoformat()}.{ext}"


@require_GET
def results_csv(request: HttpRequest) -> HttpResponse:
    filters, errors = _parse_filters(request)
    if errors:
        return HttpResponse("; ".join(errors), status=400)
    data = compute_results(_filtered(request, filters), by=filters["by"])
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename("csv")}"'
    writer = csv.writer(response)
    writer.writerow(EXPORT_FIELDS)
    for r in data["results"]:
        row = r.as_dict()
        row["labels"] = "|".join(row["labels"])
        writer.writerow(["" if row[f] is None else row[f] for f in EXPORT_FIELDS])
    return response


@require_GET
def results_json(request: HttpRequest) -> HttpResponse:
    filters, errors = _parse_filters(request)
    if errors:
        return JsonResponse({"detail": "; ".join(errors)}, status=400)
    data = compute_results(_filtered(request, filters), by=filters["by"])
    body = {
        "filters": {k: (v.isoformat() if isinstance(v, date) else v or None) for k, v in filters.items()},
        "comparisons": data["comparisons"],
        "votes": data["votes"],
        "confidence": stats.CONFIDENCE,
        "win_rate": "wins / (wins + losses) over pairwise games; Wilson score interval",
        "rating": f"Bradley-Terry, penalised maximum likelihood (alpha={stats.BT_ALPHA}), on the Elo scale",
        "configurations": [{k: r.as_dict()[k] for k in EXPORT_FIELDS} for r in data["results"]],
    }
    response = JsonResponse(body, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{_filename("json")}"'
    return response

