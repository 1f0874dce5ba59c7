"""Writes of suites: save branches as regression cases, run a suite on agents, and (worker side)
hand a finished case to the judge.

Saving reads each branch's user turns (root first) and, if asked, the answers it had as
references. Running a suite makes one session and, per case, one comparison replaying the case's
turns on every agent (:func:`comparisons.services.suite_case_start`: the existing replay
machinery, with root runs instead of a branch point). With a judge chosen, ``run_finished`` on a
case's run enqueues ``comparisons.suite_case_judge`` → :func:`comparisons.judging.case_judge`, which starts the
judging (:func:`comparisons.judging.judging_start`) once every answer of the case is in, once.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations import services as conv
from conversations.models import Message, Role, Run
from core.errors import Conflict, InvalidInput, NotFound
from core.text import clean_text
from memory.models import Agent

from . import judging
from .models import Suite, SuiteCase, SuiteRun
from .services import suite_case_start

MAX_CASES = 50


def branch_turns(leaf: Run) -> tuple[list[str], list[str]]:
    """The user turns of the branch ending at ``leaf`` (root first) and the answer of each (""
    where a run has none), in one query."""
    prompts: dict = {}
    answers: dict = {}
    for message in Message.objects.on_path_to(leaf).filter(position__in=(0, 1)):
        if message.position == 0 and message.role == Role.USER:
            prompts[message.run.depth] = message.content
        elif message.position == 1 and message.role == Role.ASSISTANT:
            answers[message.run.depth] = message.content
    depths = sorted(prompts)
    return [prompts[d] for d in depths], [answers.get(d, "") for d in depths]


@transaction.atomic
def suite_save(*, owner, name: str, leaves: list[Run], references: bool = True) -> Suite:
    """Save the branches ending at ``leaves`` (``owner``'s runs, looked up by the caller) as a
    suite named ``name``: one case per branch. Raises InvalidInput (no name or taken, no branch,
    more than 50, a branch without user turns or with too many)."""
    name = clean_text(name or "", field="suite name", max_length=100)
    if Suite.objects.filter(owner=owner, name__iexact=name).exists():
        raise InvalidInput("You already have a suite with that name.")
    if not leaves:
        raise InvalidInput("Choose at least one branch.")
    if len(leaves) > MAX_CASES:
        raise InvalidInput(f"A suite has at most {MAX_CASES} branches.")
    suite = Suite.objects.create(owner=owner, name=name)
    for position, leaf in enumerate(leaves):
        if leaf.session.owner_id != owner.pk:
            raise NotFound("No such run.")
        prompts, answers = branch_turns(leaf)
        if not prompts:
            raise InvalidInput(f"Branch {position + 1} has no user turn.")
        if len(prompts) > settings.ARBOR_COMPARE_MAX_REPLAY_TURNS:
            raise InvalidInput(f"Branch {position + 1} has more than {settings.ARBOR_COMPARE_MAX_REPLAY_TURNS} turns.")
        SuiteCase.objects.create(suite=suite, position=position, title=(leaf.session.title or "")[:200],
                                 prompts=prompts, references=answers if references else [], source_run=leaf)
    return suite


@transaction.atomic
def suite_run_start(*, suite: Suite, agents: list[Agent], blind: bool = True, judge: Agent | None = None,
                    rubric_name: str = "", rubric_text: str = "", scale_max=0, pass_threshold=None) -> SuiteRun:
    """Run ``suite`` on ``agents`` (2–4, the first the baseline): a session, and per case a
    comparison whose variants' runs are queued now. With ``judge``, the rubric is checked now and
    every case is judged once its answers are in. All or nothing.

    Raises InvalidInput (agents, rubric), NotFound (an agent the owner may not use) and Conflict
    (a suite without cases)."""
    owner = suite.owner
    for agent in [*agents, *([judge] if judge else [])]:
        if agent.owner_id not in (None, owner.pk):
            raise NotFound("No such agent.")
    if len({a.pk for a in agents}) != len(agents):
        raise InvalidInput("Choose different agents.")
    rubric = {"rubric_name": "", "rubric_text": "", "scale_max": 0, "pass_threshold": None}
    if judge is not None:
        checked = judging.clean_rubric(name=rubric_name, text=rubric_text, scale_max=scale_max,
                                       pass_threshold=pass_threshold)
        rubric = {"rubric_name": checked["name"], "rubric_text": checked["text"], "scale_max": checked["scale_max"],
                  "pass_threshold": checked["pass_threshold"]}
    cases = list(suite.cases.all())
    if not cases:
        raise Conflict("This suite has no cases.")
    now = timezone.now()
    session = conv.session_create(owner=owner, title=f"Suite {suite.name[:80]} · {now:%Y-%m-%d %H:%M}")
    run = SuiteRun.objects.create(
        suite=suite, session=session, blind=blind, judge=judge, created_at=now,
        agents=[{"id": a.pk, "name": a.name, "model": a.model or settings.ARBOR_MODEL} for a in agents], **rubric)
    for case in cases:
        suite_case_start(owner=owner, session=session, prompts=case.prompts, agents=agents, blind=blind,
                         tags=[f"suite:{suite.name[:40].lower()}"], suite_run=run, case=case)
    return run
