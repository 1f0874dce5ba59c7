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
not stop a caller from reading that run through ``GET /api/runs/{run_id}``. The request and answer
shapes are :mod:`comparisons.schemas`.
"""

from __future__ import annotations

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
from .schemas import (
    CellOut,
    ComparisonIn,
    ComparisonOut,
    ComparisonSummary,
    JudgingIn,
    JudgingOut,
    OpenOut,
    ResultsOut,
    ResumeOut,
    RubricIn,
    RubricOut,
    SuiteIn,
    SuiteOut,
    SuiteRunIn,
    VoteIn,
    cell_out,
    comparison_out,
    judging_out,
    rubric_out,
    suite_out,
)

router = Router(tags=["comparisons"])


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
    return cell_out(selectors.one_cell(comparison, turn, column))


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

@router.get("/rubrics/templates", response=answers({200: list[RubricOut]}))
def rubric_templates(request):
    """The rubric templates to copy and edit."""
    return [{"id": None, "key": key, **t} for key, t in judges.RUBRIC_TEMPLATES.items()]


@router.get("/rubrics", response=answers({200: list[RubricOut]}))
def list_rubrics(request):
    """Your rubrics, by name."""
    return [rubric_out(r) for r in selectors.rubrics_of(request.auth)]


@router.post("/rubrics", response=answers({201: RubricOut}, *BODY))
def create_rubric(request, payload: RubricIn):
    """Save a rubric. 400 names every bad field (or a name you already use)."""
    return Status(201, rubric_out(judging.rubric_save(owner=request.auth, **payload.dict())))


@router.put("/rubrics/{rubric_id}", response=answers({200: RubricOut}, *BODY, 404))
def update_rubric(request, rubric_id: str, payload: RubricIn):
    """Edit your rubric (judgings already started keep the text they were given)."""
    rubric = selectors.get_rubric_for(request.auth, rubric_id)
    return rubric_out(judging.rubric_save(owner=request.auth, rubric=rubric, **payload.dict()))


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

def _agent_for(user, agent_id) -> Agent:
    """An agent ``user`` may use (theirs or a shared one); NotFound otherwise, or for a bad id;
    InvalidInput when none is given."""
    if agent_id is None:
        raise InvalidInput("agent_id is required")
    return get_agent_for(user, agent_id)


def _suite_for(user, suite_id):
    return selectors.get_suite_for(user, suite_id)


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
