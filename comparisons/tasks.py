"""Celery tasks of comparisons: thin, by id, idempotent."""

from core import queue

from . import advance, judging


@queue.task(queue.ADVANCE_VARIANT)
def advance_variant(variant_id: int, finished_run_id: str) -> None:
    """Start the variant's next replayed turn after ``finished_run_id`` (no-op if already started)."""
    advance.variant_advance(variant_id=variant_id, finished_run_id=finished_run_id)


@queue.task(queue.RECORD_JUDGEMENT)
def record_judgement(run_id: str) -> None:
    """Read the finished judge run ``run_id`` into its Judgement (no-op if already recorded)."""
    judging.judgement_record(run_id=run_id)


@queue.task(queue.SUITE_CASE_JUDGE)
def suite_case_judge(comparison_id: str) -> None:
    """Start the judging of a suite case once its answers are in (no-op if early or done)."""
    judging.case_judge(comparison_id=comparison_id)
