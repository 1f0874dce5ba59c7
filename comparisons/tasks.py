"""Celery tasks of comparisons: thin, by id, idempotent."""

from celery import shared_task

from . import advance, judging


@shared_task(name="comparisons.advance_variant",  # = comparisons.signals.ADVANCE_VARIANT
             acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def advance_variant(variant_id: int, finished_run_id: str) -> None:
    """Start the variant's next replayed turn after ``finished_run_id`` (no-op if already started)."""
    advance.variant_advance(variant_id=variant_id, finished_run_id=finished_run_id)


@shared_task(name="comparisons.record_judgement",  # = comparisons.signals.RECORD_JUDGEMENT
             acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def record_judgement(run_id: str) -> None:
    """Read the finished judge run ``run_id`` into its Judgement (no-op if already recorded)."""
    judging.judgement_record(run_id=run_id)


@shared_task(name="comparisons.suite_case_judge",  # = comparisons.signals.SUITE_CASE_JUDGE
             acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def suite_case_judge(comparison_id: str) -> None:
    """Start the judging of a suite case once its answers are in (no-op if early or done)."""
    judging.case_judge(comparison_id=comparison_id)
