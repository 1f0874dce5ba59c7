"""Writes of LLM judges: save a rubric, start a judging over a comparison, and (worker side) record
a judge call's reply once its run has finished.

A judge call is an ordinary run (:func:`conversations.services.run_start`): a root run of the
judging's own session, answered by the judge agent, executed by the engine in a Celery worker,
streamed, and audited with its exact context, tokens and errors like every other run. When it has
finished, ``run_finished`` → :func:`comparisons.receivers.after_run` enqueues
``comparisons.record_judgement`` → :func:`judgement_record`, which reads the reply
(:func:`comparisons.judges.read_reply`) into the :class:`~comparisons.models.Judgement` row.
"""

from __future__ import annotations

from itertools import combinations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connections.selectors import cost_of
from conversations import services as conv
from conversations.models import ACTIVE_STATUSES, Message, Role, Run, RunStatus
from core.errors import Conflict, InvalidInput, NotFound
from core.text import clean_text
from memory.models import Agent

from . import judges
from .models import Comparison, Judgement, Judging, RepeatSample, Rubric, VariantRun


def clean_rubric(*, name: str, text: str, scale_max=0, pass_threshold=None) -> dict:
    """A rubric's fields, checked: ``name`` 1–100 characters, ``text`` 1–8000, ``scale_max`` 0
    (verdict only) or 2–10, ``pass_threshold`` None or 1…scale_max (only with a scale). Raises
    InvalidInput naming every bad field."""
    errors, out = [], {}
    for field, value, limit in (("name", name, 100), ("text", text, judges.MAX_RUBRIC_CHARS)):
        try:
            out[field] = clean_text(value or "", field=f"rubric {field}", max_length=limit, multiline=field == "text")
        except InvalidInput as exc:
            errors.append(exc.message)
    try:
        scale = int(scale_max or 0)
        threshold = None if pass_threshold in (None, "") else int(pass_threshold)
    except (TypeError, ValueError):
        raise InvalidInput("scale_max and pass_threshold are whole numbers") from None
    if scale != 0 and not 2 <= scale <= judges.MAX_SCALE:
        errors.append(f"scale_max is 0 (no scores) or 2 to {judges.MAX_SCALE}")
    if threshold is not None and not (scale and 1 <= threshold <= scale):
        errors.append("pass_threshold needs a scale and must be within it")
    if errors:
        raise InvalidInput("; ".join(errors))
    return {**out, "scale_max": scale, "pass_threshold": threshold}


@transaction.atomic
def rubric_save(*, owner, name: str, text: str, scale_max=0, pass_threshold=None,
                rubric: Rubric | None = None) -> Rubric:
    """Create (or, given ``rubric``, edit) ``owner``'s rubric. Raises InvalidInput (see
    :func:`clean_rubric`, or the name is taken) and NotFound (another user's rubric)."""
    fields = clean_rubric(name=name, text=text, scale_max=scale_max, pass_threshold=pass_threshold)
    if rubric is not None and rubric.owner_id != owner.pk:
        raise NotFound("No such rubric.")
    taken = Rubric.objects.filter(owner=owner, name__iexact=fields["name"])
    if rubric is not None:
        taken = taken.exclude(pk=rubric.pk)
    if taken.exists():
        raise InvalidInput("You already have a rubric with that name.")
    rubric = rubric or Rubric(owner=owner)
    for key, value in fields.items():
        setattr(rubric, key, value)
    rubric.save()
    return rubric


def _complete_turns(comparison: Comparison) -> dict[int, dict[int, Run]]:
    """turn → {column index → its succeeded run} for the turns where every column succeeded."""
    column_of = {position: index for index, position in enumerate(comparison.column_order)}
    by_turn: dict[int, dict[int, Run]] = {}
    rows = VariantRun.objects.filter(variant__comparison=comparison).select_related("run", "variant")
    for row in rows:
        by_turn.setdefault(row.turn, {})[column_of[row.variant.position]] = row.run
    n = len(comparison.column_order)
    return {turn: runs for turn, runs in sorted(by_turn.items())
            if len(runs) == n and all(r.status == RunStatus.SUCCEEDED for r in runs.values())}


def _complete_repeats(comparison: Comparison) -> dict[tuple[int, int], dict[int, Run]]:
    """(turn, sample) → {column index → its succeeded repeat run} where every column's repeat succeeded."""
    column_of = {position: index for index, position in enumerate(comparison.column_order)}
    by_key: dict[tuple[int, int], dict[int, Run]] = {}
    for row in RepeatSample.objects.filter(variant__comparison=comparison).select_related("run", "variant"):
        by_key.setdefault((row.turn, row.sample), {})[column_of[row.variant.position]] = row.run
    n = len(comparison.column_order)
    return {key: runs for key, runs in sorted(by_key.items())
            if len(runs) == n and all(r.status == RunStatus.SUCCEEDED for r in runs.values())}


def _answers(runs) -> dict:
    """run id → its final answer (the last assistant message of the run)."""
    out = {}
    for run_id, content in (Message.objects.filter(run__in=list(runs), role=Role.ASSISTANT)
                            .order_by("run_id", "position").values_list("run_id", "content")):
        out[run_id] = content
    return out


@transaction.atomic
def judging_start(*, comparison: Comparison, agent: Agent, rubric_name: str, rubric_text: str, scale_max=0,
                  pass_threshold=None) -> Judging:
    """Judge ``comparison`` with ``agent`` under a rubric: for every prompt whose answers all
    succeeded, every pair of columns, in both orders, one run of the judge (queued now, run by the
    workers in parallel); with a pass threshold, the same for each repeat sample whose answers all
    succeeded (their scores give pass^k; only the voted answers' verdicts count as the judge's).
    Writes the judging, its session, and per call a run, its input message
    and a Judgement; all or nothing.

    Raises InvalidInput (bad rubric, see :func:`clean_rubric`), NotFound (an agent the owner may
    not use) and Conflict (no prompt has all its answers yet, or a run is still going)."""
    owner = comparison.owner
    if agent.owner_id not in (None, owner.pk):
        raise NotFound("No such agent.")
    rubric = clean_rubric(name=rubric_name, text=rubric_text, scale_max=scale_max, pass_threshold=pass_threshold)
    turns = _complete_turns(comparison)
    if not turns:
        raise Conflict("No prompt has every answer yet; judge once the answers are in.")
    groups = {(turn, 0): runs for turn, runs in turns.items()}
    if rubric["pass_threshold"] is not None:  # pass^k: every repeat is scored too
        groups.update(_complete_repeats(comparison))
    answers = _answers(r.pk for runs in groups.values() for r in runs.values())
    short = str(comparison.pk)[:8]
    session = conv.session_create(owner=owner, title=f"Judge · {rubric['name'][:60]} · comparison {short}")
    judging = Judging.objects.create(
        comparison=comparison, agent=agent, agent_name=agent.name, model=agent.model or settings.ARBOR_MODEL,
        rubric_name=rubric["name"], rubric_text=rubric["text"], scale_max=rubric["scale_max"],
        pass_threshold=rubric["pass_threshold"], session=session,
    )
    for (turn, sample), runs in sorted(groups.items()):
        for x, y in combinations(sorted(runs), 2):
            for first, second in ((x, y), (y, x)):
                text = judges.judge_prompt(
                    prompt=comparison.prompts[turn], first=answers.get(runs[first].pk, ""),
                    second=answers.get(runs[second].pk, ""), rubric=rubric["text"], scale_max=rubric["scale_max"],
                    max_chars=settings.ARBOR_MAX_INPUT_CHARS,
                )
                run = conv.run_start(session=session, input=text, parent=None, agent=agent, activate=False)
                Judgement.objects.create(judging=judging, turn=turn, sample=sample, first=first, second=second,
                                         run=run)
    return judging


def judgement_record(*, run_id) -> Judgement | None:
    """Worker side: read the finished judge run ``run_id`` into its Judgement (verdict, scores,
    rationale, tokens, cost). Idempotent: a recorded judgement, a run still going or a run that
    is no judge call leave everything as it is (returns None)."""
    with transaction.atomic():
        judgement = (Judgement.objects.select_for_update().select_related("run", "judging")
                     .filter(run_id=run_id, recorded_at__isnull=True).first())
        if judgement is None or judgement.run.status in ACTIVE_STATUSES:
            return None
        run = judgement.run
        if run.status == RunStatus.SUCCEEDED:
            text = (Message.objects.filter(run=run, role=Role.ASSISTANT).order_by("-position")
                    .values_list("content", flat=True).first()) or ""
            reading = judges.read_reply(text, judgement.judging.scale_max)
            judgement.verdict, judgement.rationale, judgement.error = reading.verdict, reading.rationale, reading.error
            judgement.score_first, judgement.score_second = reading.score_first, reading.score_second
        else:
            judgement.error = f"The judge's run {run.status}: {run.error_message}"[:300]
        judgement.prompt_tokens, judgement.completion_tokens = run.prompt_tokens, run.completion_tokens
        judgement.cost = cost_of(run.connection_id, run.model, run.prompt_tokens, run.completion_tokens)
        judgement.recorded_at = timezone.now()
        judgement.save()
        return judgement


def judging_resume(*, judging: Judging) -> int:
    """Record every finished judge call that was not recorded (a lost task); returns how many."""
    pending = Judgement.objects.filter(judging=judging, recorded_at__isnull=True).exclude(
        run__status__in=ACTIVE_STATUSES).values_list("run_id", flat=True)
    return sum(1 for run_id in list(pending) if judgement_record(run_id=run_id) is not None)


def case_judge(*, comparison_id) -> Judging | None:
    """Worker side: start the judging of a suite case once every turn of every variant has finished
    or stopped; None when there is no judge, it is too early, or the case is already judged."""
    with transaction.atomic():
        comparison = (Comparison.objects.select_for_update().select_related("suite_run__judge")
                      .filter(pk=comparison_id, suite_run__judge__isnull=False).first())
        if comparison is None or comparison.judgings.exists():
            return None
        rows = list(VariantRun.objects.filter(variant__comparison=comparison).values_list(
            "variant_id", "run__status"))
        if any(status in ACTIVE_STATUSES for _, status in rows):
            return None
        stopped = set(comparison.variants.exclude(stopped_reason="").values_list("pk", flat=True))
        per_variant = {}
        for variant_id, _ in rows:
            per_variant[variant_id] = per_variant.get(variant_id, 0) + 1
        if any(n < comparison.turn_count and v not in stopped for v, n in per_variant.items()):
            return None
        run = comparison.suite_run
        try:
            return judging_start(comparison=comparison, agent=run.judge, rubric_name=run.rubric_name,
                                         rubric_text=run.rubric_text, scale_max=run.scale_max,
                                         pass_threshold=run.pass_threshold)
        except Conflict:  # no prompt with every answer (every variant failed): nothing to judge
            return None
