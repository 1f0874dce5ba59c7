"""Receivers: chain the replayed turns of a comparison's variants; record judge calls; export and import a session's
comparisons with it in Arbor JSON (:mod:`comparisons.transfer`).

``run_finished`` is sent in the worker after a run's final state is committed. The receiver only
looks the run up (one query) and enqueues what follows: ``comparisons.advance_variant`` after a
replayed turn (the task starts the next turn idempotently, see
:func:`comparisons.advance.variant_advance`), ``comparisons.suite_case_judge`` after a judged suite
case's turn, ``comparisons.record_judgement`` after a judge call.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.models import F
from django.dispatch import receiver

from conversations.models import Run
from conversations.signals import run_finished, session_export, session_import
from core import queue

from . import transfer
from .models import Mode

log = logging.getLogger(__name__)



@receiver(run_finished, dispatch_uid="comparisons.after_run")
def after_run(sender, run, status, **kwargs) -> None:
    """What a finished run means for comparisons, read in one query (every run of every chat passes
    here, and almost none belongs to a comparison):

    - it answered a replayed turn that is not the last: enqueue the variant's next turn;
    - it answered a turn of a suite case with a judge: enqueue judging the case (the task waits
      for the case's last answer; it is a no-op before);
    - it is a judge call: enqueue reading its reply into the Judgement.

    The run's state is already committed, so each task is sent at once. A task that cannot be
    sent is logged; the run is final either way ("Resume" on the page recovers a replay)."""
    facts = (
        Run.objects.filter(pk=run.pk)
        .values(variant_id=F("comparison_turn__variant_id"), turn=F("comparison_turn__turn"),
                comparison_id=F("comparison_turn__variant__comparison_id"),
                mode=F("comparison_turn__variant__comparison__mode"),
                prompts=F("comparison_turn__variant__comparison__prompts"),
                suite_judge=F("comparison_turn__variant__comparison__suite_run__judge_id"),
                judge_call=F("judgement__id"))
        .first()
    )
    if facts is None:
        return
    if facts["mode"] == Mode.REPLAY and facts["turn"] + 1 < len(facts["prompts"]):
        _send(queue.ADVANCE_VARIANT, facts["variant_id"], str(run.pk), run=run)
    if facts["suite_judge"] is not None:
        _send(queue.SUITE_CASE_JUDGE, str(facts["comparison_id"]), run=run)
    if facts["judge_call"] is not None:
        _send(queue.RECORD_JUDGEMENT, str(run.pk), run=run)


def _send(task_name: str, *args, run) -> None:
    try:
        queue.send(task_name, *args, queue=settings.ARBOR_RUN_QUEUE)
    except Exception:
        log.exception("could not enqueue %s after run %s", task_name, run.pk)


@receiver(session_export, dispatch_uid="comparisons.export")
def export_comparisons(sender, session, run_ids, **kwargs) -> dict:
    """The session's comparisons among the exported runs, as the ``comparisons`` section."""
    found = transfer.comparisons_json(session, run_ids)
    return {"comparisons": found} if found else {}


@receiver(session_import, dispatch_uid="comparisons.import")
def import_comparisons(sender, session_id, owner, runs, sections, **kwargs) -> list[str]:
    """Write an imported session's ``comparisons`` section; returns warnings."""
    if "comparisons" not in sections:
        return []
    return transfer.comparisons_write(session_id=session_id, owner=owner, runs=runs, raw=sections["comparisons"])
