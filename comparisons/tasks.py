"""Celery tasks of comparisons: thin, by id, idempotent."""

from core import queue

from . import advance


@queue.task(queue.ADVANCE_VARIANT)
def advance_variant(variant_id: int, finished_run_id: str) -> None:
    """Start the variant's next replayed turn after ``finished_run_id`` (no-op if already started)."""
    advance.variant_advance(variant_id=variant_id, finished_run_id=finished_run_id)
