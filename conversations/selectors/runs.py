"""Reads about runs as a whole: the finished runs whose stored stream events may go, and what a
run's stream reads from the run (:data:`RUN_SOURCE`, a :class:`streams.source.RunSource`)."""

from __future__ import annotations

from datetime import datetime

from streams.source import RunSource

from ..models import FINISHED_STATUSES, Run


def runs_finished_before(cutoff: datetime):
    """Ids of the runs that finished before ``cutoff``: a ``values("pk")`` QuerySet (a subquery)."""
    return Run.objects.filter(status__in=FINISHED_STATUSES, finished_at__lt=cutoff).values("pk")


def _run_finished(run_id) -> bool:
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first() in FINISHED_STATUSES


def _run_ending(run_id) -> tuple[str | None, dict]:
    """The run's final answer (its last assistant message; None when it has none) and the data of
    its ``done`` event ``{"status", "error", "usage"}``."""
    run = Run.objects.get(pk=run_id)
    answer = (run.messages.filter(position__gt=0, role="assistant").order_by("-position")
              .values_list("content", flat=True).first())
    return answer, {"status": run.status, "error": run.error, "usage": run.usage}


RUN_SOURCE = RunSource(finished=_run_finished, ending=_run_ending)
