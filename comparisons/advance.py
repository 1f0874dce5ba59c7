"""The worker side of replayed comparisons: start a variant's next turn once its previous run is
done (the ``comparisons.advance_variant`` task, enqueued by :mod:`comparisons.receivers` on
``run_finished``). Request-side actions are in :mod:`comparisons.services`.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from connections.models import Connection
from conversations import services as conv
from conversations.models import ACTIVE_STATUSES, Run, RunStatus

from .models import RepeatSample, Variant, VariantRun

log = logging.getLogger(__name__)


def start_turn(*, variant: Variant, turn: int, parent: Run | None) -> Run:
    """Start turn ``turn`` of ``variant`` (its replayed prompt) as a child of ``parent`` (None: a root
    run, the first turn of a suite case), answered by
    the variant's agent with its model, parameters and connection as the comparison recorded them;
    records the VariantRun. With ``samples`` k > 1, also starts k − 1 repeats: siblings of the run
    with the same input and the seed raised by 1 … k − 1 (:class:`RepeatSample`). Returns the run.

    The run never becomes the session's active run: a comparison does not change the branch the
    chat shows; "Continue this branch" on the comparison page opens it explicitly."""
    comparison = variant.comparison
    connection_id = variant.config.get("connection_id")
    run = conv.run_start(
        session=comparison.session,
        input=comparison.prompts[turn],
        parent=parent,
        agent=variant.agent,
        model=variant.config.get("model") or None,
        params=variant.config.get("params") or None,
        connection=Connection.objects.filter(pk=connection_id).first() if connection_id else None,
        activate=False,
    )
    VariantRun.objects.create(variant=variant, turn=turn, run=run)
    for sample in range(1, comparison.samples):
        params = dict(variant.config.get("params") or {})
        params["seed"] = int(params.get("seed") or 0) + sample
        repeat = conv.run_start(
            session=comparison.session, input=comparison.prompts[turn], parent=parent, agent=variant.agent,
            model=variant.config.get("model") or None, params=params,
            connection=Connection.objects.filter(pk=connection_id).first() if connection_id else None,
            activate=False,
        )
        RepeatSample.objects.create(variant=variant, turn=turn, sample=sample, run=repeat)
    return run


def variant_advance(*, variant_id: int, finished_run_id) -> Run | None:
    """After a variant's run has finished, start its next replayed turn (a child of that run).

    Returns the new run, or None when there is nothing to start: the comparison has no further
    turn, the run did not succeed (the variant stops, with the reason stored), or the next turn
    was already started (idempotent). Safe to call any number of times, concurrently.
    """
    try:
        with transaction.atomic():
            if not Variant.objects.select_for_update().filter(pk=variant_id).exists():  # the lock
                return None
            variant = Variant.objects.select_related("comparison__session", "agent").get(pk=variant_id)
            done = VariantRun.objects.filter(variant=variant, run_id=finished_run_id).select_related("run").first()
            if done is None:
                return None
            next_turn = done.turn + 1
            if next_turn >= variant.comparison.turn_count:
                return None
            if VariantRun.objects.filter(variant=variant, turn=next_turn).exists():
                return None
            if done.run.status != RunStatus.SUCCEEDED:
                if done.run.status in ACTIVE_STATUSES:
                    return None
                variant.stopped_reason = f"Turn {done.turn + 1} {done.run.status}; later turns were not replayed."
                variant.save(update_fields=["stopped_reason"])
                return None
            return start_turn(variant=variant, turn=next_turn, parent=done.run)
    except IntegrityError:  # another delivery started the same turn first
        log.info("variant %s: turn after run %s already started", variant_id, finished_run_id)
        return None
