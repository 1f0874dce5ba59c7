"""Pages of comparisons: start form, side-by-side columns, votes, results (+ CSV/JSON export).

Function views; HTMX partials (``template#partial``); every view looks objects up through the
selectors (:mod:`comparisons.selectors`, :mod:`conversations.selectors`), so other users'
comparisons, sessions and runs are 404 (a NotFound is the site's 404 page). What the page reads and
writes is the same as the JSON API's (:mod:`comparisons.api`): the board and the results come from
the selectors, every write from :mod:`comparisons.services`.

Blind comparisons: until every prompt has a vote, nothing identifying a variant is rendered: not
its label, model, system prompt, agent, cost or database id. Columns are addressed by their
(shuffled) column index, runs by their random UUIDs.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages as flash
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.ratelimit import limit_run_creation
from connections.selectors import pickable_models
from conversations.models import ACTIVE_STATUSES, Run
from conversations.selectors import get_run_for, get_session_for
from core.errors import ArborError, InvalidInput, NotFound
from core.refusals import answers_refusals

from . import insights, judges, judging, selectors, services, sse, stats, trends
from . import suites as suite_writes
from .forms import ComparisonForm, variant_forms
from .models import COLUMN_LETTERS, Comparison, Mode, Suite, VoteChoice

CELL_DONE_EVENT = "compareCellDone"


# --- the side-by-side page -----------------------------------------------------------------------

def _detail_context(comparison: Comparison) -> dict:
    """The page's context: :func:`comparisons.selectors.board` plus what only the template needs."""
    state = selectors.board(comparison)
    state["repeats"] = trends.repeat_stats(comparison) if comparison.samples > 1 else None
    return {**state, "session": comparison.session, "choices": VoteChoice, "two": len(state["columns"]) == 2,
            "rank_options": range(1, len(state["columns"]) + 1), "cell_event": CELL_DONE_EVENT}


@require_GET
def detail(request: HttpRequest, comparison_id) -> HttpResponse:
    comparison = selectors.get_comparison_for(request.user, comparison_id)
    context = _detail_context(comparison)
    if request.htmx and not request.htmx.boosted:
        return render(request, "comparisons/detail.html#board", context)
    return render(request, "comparisons/detail.html", context)


@require_GET
def cell(request: HttpRequest, comparison_id, turn: int, column: int) -> HttpResponse:
    """One column of one prompt: streaming, waiting for its turn, or finished with its metrics."""
    comparison = selectors.get_comparison_for(request.user, comparison_id)
    state = selectors.one_cell(comparison, turn, column)
    context = {"comparison": comparison, "session": comparison.session, "cell": state}
    response = render(request, "comparisons/detail.html#cell", context)
    if state["run"] is not None and state["run"].status not in ACTIVE_STATUSES:
        response["HX-Trigger"] = CELL_DONE_EVENT
    return response


@require_http_methods(["GET", "POST"])
@answers_refusals(back=lambda request, comparison_id, turn: reverse(
    "comparisons:detail", kwargs={"comparison_id": comparison_id}) + f"#turn-{turn + 1}")
def vote(request: HttpRequest, comparison_id, turn: int) -> HttpResponse:
    """GET: the vote panel of one prompt (partial). POST: cast the vote, then back to the page."""
    comparison = selectors.get_comparison_for(request.user, comparison_id)
    selectors.check_turn(comparison, turn)
    url = reverse("comparisons:detail", kwargs={"comparison_id": comparison.pk})
    if request.method == "POST":
        n = len(comparison.column_order)
        ranking = None
        if request.POST.get("choice") == VoteChoice.RANKING:
            ranking = {i: request.POST.get(f"rank_{i}") for i in range(n)}
        services.vote_cast(comparison=comparison, turn=turn, choice=request.POST.get("choice", ""),
                           ranking=ranking, note=request.POST.get("note", ""))
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
@answers_refusals()
def open_branch(request: HttpRequest, comparison_id, column: int) -> HttpResponse:
    """Continue a variant's branch in the chat: make its last run active, go to the session page."""
    comparison = selectors.get_comparison_for(request.user, comparison_id)
    session, _ = services.branch_open(comparison=comparison, column=column)
    return redirect("conversations:session_detail", session_id=session.pk)


@require_POST
@answers_refusals(back="comparisons:detail")
def reveal(request: HttpRequest, comparison_id) -> HttpResponse:
    comparison = selectors.get_comparison_for(request.user, comparison_id)
    services.comparison_reveal(comparison=comparison)
    return redirect("comparisons:detail", comparison_id=comparison.pk)


@require_POST
@limit_run_creation
def resume(request: HttpRequest, comparison_id) -> HttpResponse:
    comparison = selectors.get_comparison_for(request.user, comparison_id)
    started = services.comparison_resume(comparison=comparison)
    flash.info(request, f"Started {len(started)} waiting turn(s)." if started else "Nothing was waiting.")
    return redirect("comparisons:detail", comparison_id=comparison.pk)


# --- starting --------------------------------------------------------------------------------------

def _source_choices(session, branch_point: Run) -> list[tuple[str, str]]:
    """Leaves of the branches below ``branch_point`` in this session (newest first, at most 30)."""
    choices = []
    for leaf, input_text in selectors.leaves_below(session, branch_point):
        turns = leaf.depth - branch_point.depth
        text = " ".join(input_text.split())[:60]
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
            samples=form.cleaned_data.get("samples") or 1,
        )
    except ArborError as exc:
        form.add_error(None, exc.message)
        return None, exc.status
    return comparison, 200


def _known_models(user) -> list[str]:
    """Model names to suggest: the models of the user's connections, those with a context window
    or a price, and the default model."""
    listed = {model.name for model in pickable_models(user)}
    return sorted(set(getattr(settings, "ARBOR_MODEL_CONTEXT_WINDOWS", {})) | set(settings.ARBOR_MODEL_PRICES)
                  | {settings.ARBOR_MODEL} | listed)


def _back_to_chat(request, session_id) -> str:
    return reverse("conversations:session_detail", kwargs={"session_id": session_id})


@require_POST
@answers_refusals(back=_back_to_chat)
def from_runs(request: HttpRequest, session_id) -> HttpResponse:
    """"Compare blind" under a fan-out of the chat: its answers (``run``, 2–4) become a blind
    comparison, voted and counted like any other; no run is started."""
    session = get_session_for(request.user, session_id)
    runs = [get_run_for(request.user, run_id) for run_id in request.POST.getlist("run")]
    comparison = services.comparison_from_runs(owner=request.user, session=session, runs=runs)
    return redirect("comparisons:detail", comparison_id=comparison.pk)


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
    bp_messages = selectors.opening_messages(branch_point)
    context = {"session": session, "branch_point": branch_point, "bp_messages": bp_messages, "form": form,
               "vforms": vforms, "letters": COLUMN_LETTERS, "known_models": _known_models(request.user)}
    return render(request, "comparisons/new.html", context, status=status)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "comparisons/index.html", {"rows": selectors.index_rows(request.user)})


# --- results ---------------------------------------------------------------------------------------

def _results(request) -> tuple[selectors.ResultFilters, dict]:
    """The filters of the query string and the results over them (InvalidInput for a bad filter)."""
    filters = selectors.result_filters(tag=request.GET.get("tag"), since=request.GET.get("since"),
                                       until=request.GET.get("until"), by=request.GET.get("by"))
    comparisons = selectors.counted_comparisons(request.user, filters)
    data = selectors.compute_results(comparisons, by=filters.by)
    data["evaluation"] = insights.cached_evaluation(comparisons, by=filters.by)
    return filters, data


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
@answers_refusals()
def results(request: HttpRequest) -> HttpResponse:
    filters, data = _results(request)
    context = {**data, "filters": filters, "chart": _chart(data["results"]),
               "all_tags": selectors.tag_names(request.user),
               "query": request.GET.urlencode(), "confidence": int(stats.CONFIDENCE * 100)}
    if request.htmx and not request.htmx.boosted:
        return render(request, "comparisons/results.html#table", context)
    return render(request, "comparisons/results.html", context)


@require_GET
@answers_refusals()
def results_csv(request: HttpRequest) -> HttpResponse:
    _, data = _results(request)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{selectors.results_filename("csv")}"'
    selectors.write_results_csv(response, data)
    return response


@require_GET
@answers_refusals(as_json=True)
def results_json(request: HttpRequest) -> HttpResponse:
    filters, data = _results(request)
    response = JsonResponse(selectors.results_json(filters, data), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{selectors.results_filename("json")}"'
    return response


# --- LLM judges -------------------------------------------------------------------------------------

def _judge_form_context(request, comparison: Comparison, values: dict, error: str = "") -> dict:
    return {"comparison": comparison, "session": comparison.session, "values": values, "error": error,
            "agents": selectors.judge_agents(request.user), "templates": judges.RUBRIC_TEMPLATES,
            "rubrics": selectors.rubrics_of(request.user), "max_scale": judges.MAX_SCALE,
            "judgings": comparison.judgings.all()}


def _rubric_values(request) -> dict:
    """The rubric fields to show: a template (``?template=``) or a saved rubric (``?rubric=``) to
    copy and edit, else helpfulness."""
    source = judges.RUBRIC_TEMPLATES.get(request.GET.get("template", ""), judges.RUBRIC_TEMPLATES["helpfulness"])
    try:
        rubric = selectors.get_rubric_for(request.user, request.GET["rubric"]) if request.GET.get("rubric") else None
    except NotFound:
        rubric = None
    if rubric is not None:
        source = {"name": rubric.name, "text": rubric.text, "scale_max": rubric.scale_max,
                  "pass_threshold": rubric.pass_threshold}
    return {"rubric_name": source["name"], "rubric_text": source["text"], "scale_max": source["scale_max"],
            "pass_threshold": source["pass_threshold"] or "", "agent": ""}


@require_http_methods(["GET", "POST"])
@limit_run_creation
def judge(request: HttpRequest, comparison_id) -> HttpResponse:
    """Choose a judge agent and a rubric (a template or a saved rubric to copy and edit) and start
    judging every pair in both orders; optionally save the rubric as one's own."""
    comparison = selectors.get_comparison_for(request.user, comparison_id)
    if request.method == "GET":
        context = _judge_form_context(request, comparison, _rubric_values(request))
        return render(request, "comparisons/judge.html", context)
    values = {k: request.POST.get(k, "") for k in ("agent", "rubric_name", "rubric_text", "scale_max",
                                                    "pass_threshold")}
    try:
        agent = selectors.pickable_agent(request.user, values["agent"])
        with transaction.atomic():
            if request.POST.get("save_rubric"):
                judging.rubric_save(owner=request.user, name=values["rubric_name"], text=values["rubric_text"],
                                    scale_max=values["scale_max"] or 0, pass_threshold=values["pass_threshold"])
            started = judging.judging_start(
                comparison=comparison, agent=agent, rubric_name=values["rubric_name"],
                rubric_text=values["rubric_text"], scale_max=values["scale_max"] or 0,
                pass_threshold=values["pass_threshold"])
    except NotFound:
        return render(request, "comparisons/judge.html",
                      _judge_form_context(request, comparison, values, "Choose the judge agent."), status=400)
    except ArborError as exc:
        context = _judge_form_context(request, comparison, values, exc.message)
        return render(request, "comparisons/judge.html", context, status=exc.status)
    return redirect("comparisons:judging", comparison.pk, started.pk)


def _judging_context(comparison, state: dict) -> dict:
    return {**state, "comparison": comparison, "letters": COLUMN_LETTERS,
            "agreement": insights.comparison_agreement(comparison) if state["complete"] else None}


@require_GET
def judging_detail(request: HttpRequest, comparison_id, judging_id) -> HttpResponse:
    """A judging's progress (streamed while calls are out, :func:`judging_events`; each call streams
    like any run), its verdicts per pair in both orders, flips, position bias and agreement with votes."""
    comparison = selectors.get_comparison_for(request.user, comparison_id)
    found = insights.get_judging_for(request.user, comparison, judging_id)
    context = _judging_context(comparison, insights.judging_state(found))
    if request.htmx and not request.htmx.boosted:
        return render(request, "comparisons/judging.html#progress", context)
    return render(request, "comparisons/judging.html", context)


@require_GET
def judging_events(request: HttpRequest, comparison_id, judging_id) -> HttpResponse:
    """The judging's progress as Server-Sent Events for the htmx SSE extension: a ``progress`` event
    (the progress fragment) each time a judge call is recorded, ``done`` when all are
    (:mod:`comparisons.sse`). Another user's judging is 404."""
    comparison = selectors.get_comparison_for(request.user, comparison_id)
    found = insights.get_judging_for(request.user, comparison, judging_id)

    def fragment(state: dict) -> str:
        return render_to_string("comparisons/judging.html#progress", _judging_context(comparison, state),
                                request=request)

    return sse.judging_sse_response(found, fragment)


@require_POST
def judging_record(request: HttpRequest, comparison_id, judging_id) -> HttpResponse:
    """Record the finished judge calls whose recording was lost."""
    comparison = selectors.get_comparison_for(request.user, comparison_id)
    found = insights.get_judging_for(request.user, comparison, judging_id)
    judging.judging_resume(judging=found)
    return redirect("comparisons:judging", comparison.pk, found.pk)


# --- suites -------------------------------------------------------------------------------------------

def _branch_leaves(user, limit: int = 40) -> list[tuple[Run, str]]:
    """The newest leaves of the user's branches (finished runs without children, not a judge's or
    a suite's own runs), each with a label: session title, turns, the last prompt."""
    return [(leaf, f"{leaf.session.title or 'Session'} · {leaf.depth + 1} turn{'s' if leaf.depth else ''} · "
                   f"“{prompt[:60]}”") for leaf, prompt in selectors.branch_leaves(user, limit)]


@require_http_methods(["GET", "POST"])
def suites(request: HttpRequest) -> HttpResponse:
    """The user's suites, and saving branches as a new one (their user turns; the answers they
    had as references when asked)."""
    error, status = "", 200
    if request.method == "POST":
        ids = request.POST.getlist("leaves")
        try:
            leaves = [get_run_for(request.user, pk) for pk in ids]
            suite = suite_writes.suite_save(owner=request.user, name=request.POST.get("name", ""), leaves=leaves,
                                            references=bool(request.POST.get("references")))
            return redirect("comparisons:suite", suite.pk)
        except ArborError as exc:
            error, status = exc.message, exc.status
    rows = selectors.suites_of(request.user)
    return render(request, "comparisons/suites.html", {"suites": rows, "leaves": _branch_leaves(request.user),
                                                       "error": error}, status=status)


def _suite_context(request, suite: Suite, error: str = "") -> dict:
    rows = trends.suite_runs(suite)
    return {"suite": suite, "cases": suite.cases.all(), "rows": rows, "trend": trends.trend(rows), "error": error,
            "agents": selectors.judge_agents(request.user), "templates": judges.RUBRIC_TEMPLATES}


@require_GET
def suite_detail(request: HttpRequest, suite_id: int) -> HttpResponse:
    """A suite: its cases, its runs (date, agents, win rate with interval, rating), the trend chart
    and the form to run it again."""
    suite = selectors.get_suite_for(request.user, suite_id)
    return render(request, "comparisons/suite.html", _suite_context(request, suite))


@require_POST
@limit_run_creation
def suite_run(request: HttpRequest, suite_id: int) -> HttpResponse:
    """Run the suite on a baseline and a challenger (blind votes; the judge when one is chosen)."""
    suite = selectors.get_suite_for(request.user, suite_id)
    try:
        agents = [selectors.pickable_agent(request.user, request.POST.get(k)) for k in ("baseline", "challenger")]
        judge_pk = request.POST.get("judge") or ""
        judge_agent = selectors.pickable_agent(request.user, judge_pk) if judge_pk else None
    except NotFound:
        agents, judge_agent = [None], None
    try:
        if None in agents:
            raise InvalidInput("Choose the baseline and the challenger.")
        template = judges.RUBRIC_TEMPLATES.get(request.POST.get("template", ""), {})
        suite_writes.suite_run_start(
            suite=suite, agents=agents, blind=bool(request.POST.get("blind")), judge=judge_agent,
            rubric_name=request.POST.get("rubric_name") or template.get("name", ""),
            rubric_text=request.POST.get("rubric_text") or template.get("text", ""),
            scale_max=template.get("scale_max", 0), pass_threshold=template.get("pass_threshold"))
    except ArborError as exc:
        return render(request, "comparisons/suite.html", _suite_context(request, suite, exc.message),
                      status=exc.status)
    return redirect("comparisons:suite", suite.pk)
