"""Receivers: chain the replayed turns of a comparison's variants; record judge calls; export and import a session's
comparisons with it in Arbor JSON (:mod:`comparisons.transfer`).

``run_finished`` is sent in the worker after a run's final state is committed. The receiver only
looks the run up and, when it answers a replayed turn, enqueues ``comparisons.advance_variant``;
the task starts the next turn (idempotently, see :func:`comparisons.advance.variant_advance`).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.dispatch import receiver

from conversations.signals import run_finished, session_export, session_import
from core import queue

from . import transfer
from .models import Judgement, Mode, VariantRun

log = logging.getLogger(__name__)



@receiver(run_finished, dispatch_uid="comparisons.advance_replay")
def advance_replay(sender, run, status, **kwargs) -> None:
    """When ``run`` answered a replayed turn that is not the last, enqueue the variant's next turn
    (the run's state is already committed, so it is sent at once)."""
    row = (
        VariantRun.objects.filter(run_id=run.pk, variant__comparison__mode=Mode.REPLAY)
        .values("variant_id", "turn", "variant__comparison__prompts")
        .first()
    )
    if row is None or row["turn"] + 1 >= len(row["variant__comparison__prompts"]):
        return
    try:
        queue.send(queue.ADVANCE_VARIANT, row["variant_id"], str(run.pk), queue=settings.ARBOR_RUN_QUEUE)
    except Exception:  # the run is final either way; "Resume" on the page recovers
        log.exception("could not enqueue the next replayed turn after run %s", run.pk)


@receiver(run_finished, dispatch_uid="comparisons.suite_case_judge")
def judge_suite_case(sender, run, status, **kwargs) -> None:
    """When ``run`` answered a turn of a suite case with a judge, enqueue judging the case (the task
    waits for the case's last answer; it is a no-op before)."""
    comparison_id = (VariantRun.objects.filter(run_id=run.pk, variant__comparison__suite_run__judge__isnull=False)
                     .values_list("variant__comparison_id", flat=True).first())
    if comparison_id is None:
        return
    try:
        queue.send(queue.SUITE_CASE_JUDGE, str(comparison_id), queue=settings.ARBOR_RUN_QUEUE)
    except Exception:
        log.exception("could not enqueue judging the suite case of run %s", run.pk)


@receiver(run_finished, dispatch_uid="comparisons.record_judgement")
def record_judgement(sender, run, status, **kwargs) -> None:
    """When ``run`` is a judge call, enqueue reading its reply into the Judgement."""
    if not Judgement.objects.filter(run_id=run.pk).exists():
        return
    try:
        queue.send(queue.RECORD_JUDGEMENT, str(run.pk), queue=settings.ARBOR_RUN_QUEUE)
    except Exception:
        log.exception("could not enqueue recording the judge run %s", run.pk)


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
