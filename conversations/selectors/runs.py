"""Reads about runs: the finished runs whose stored stream events may go, what a run's stream reads
from the run (:data:`RUN_SOURCE`, a :class:`streams.source.RunSource`), one run's texts and model calls."""

from __future__ import annotations

from datetime import datetime

from streams.source import RunSource

from ..models import FINISHED_STATUSES, Message, Run, Step, StepKind


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


# --- one run's texts and calls ---------------------------------------------------------------------

def run_texts(run: Run) -> dict:
    """``{"user": input, "assistant": answer}`` of ``run`` (its last message of each role; one query)."""
    return dict(Message.objects.filter(run=run, role__in=["user", "assistant"]).order_by("position")
                .values_list("role", "content"))


def last_model_call(run: Run) -> Step | None:
    """The run's latest model-call step (None before its first call)."""
    return Step.objects.filter(run=run, kind=StepKind.LLM_CALL).order_by("-started_at", "-id").first()


def find_run(run_id) -> Run | None:
    """Run ``run_id`` whoever owns it (the caller checks it is in the session it acts on), or None."""
    return Run.objects.filter(pk=run_id).first()


# --- provenance: extra edges to a run's sources, kept by an app above this one --------------------

_provenance_readers: list = []


def register_provenance_reader(reader) -> None:
    """Let an app above this one (``merges``) answer :func:`provenance_for`: ``reader(run_ids)``
    returns ``{run_id: {...}}`` for the runs among ``run_ids`` that have provenance. Called once
    from that app's ``ready()``; registering the same reader twice keeps one."""
    if reader not in _provenance_readers:
        _provenance_readers.append(reader)


def provenance_for(run_ids) -> dict:
    """``{run_id: provenance}`` for the runs among ``run_ids`` that carry content from other runs
    (a fused answer, a merge turn); one query per registered reader, none for an empty list."""
    run_ids = list(run_ids)
    found: dict = {}
    if not run_ids:
        return found
    for reader in _provenance_readers:
        found.update(reader(run_ids))
    return found


_edge_readers: list = []


def register_provenance_edges(reader) -> None:
    """Let an app above this one answer :func:`provenance_edges`: ``reader(session)`` returns
    ``[{"run_id", "source_run_id", "kind", "pruned"}]``. Registering the same reader twice keeps one."""
    if reader not in _edge_readers:
        _edge_readers.append(reader)


def provenance_edges(session) -> list[dict]:
    """The provenance edges among ``session``'s runs (a fused run to each source, a merge turn to its
    source branch), which the tree map draws dashed: one query per registered reader."""
    return [edge for reader in _edge_readers for edge in reader(session)]
