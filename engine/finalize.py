"""The end of a run: its final state written once, then ``run_finished``, compaction and ``done``."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from connections.endpoint import Endpoint
from connections.selectors import base_url_for
from conversations.models import Message, Role, Run, RunStatus, Step
from conversations.signals import run_finished
from core.tokens import TokenCounter, counter_for
from streams.backends import TERMINAL, RunStream

from . import compaction
from .context import ContextOverflow
from .llm import describe_error
from .model_call import BrokenStream, DeadlineExceeded, Outcome, run_status


class ToolRoundLimit(Exception):
    """The model still asked for tools after the last allowed round."""


@dataclass
class Totals:
    """Usage of every model call of a run (tool rounds add up); ``counted`` when any was counted by us."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    counted: bool = False


def error_of(exc: BaseException, endpoint: Endpoint | None = None) -> tuple[str, str]:
    """``(type, message)`` of a run's failure, for ``Run.error_type`` / ``error_message``; errors of
    the endpoint name its connection."""
    if isinstance(exc, BrokenStream):
        return "broken_stream", str(exc)
    if isinstance(exc, DeadlineExceeded):
        return "deadline", str(exc)
    if isinstance(exc, ContextOverflow):
        return "context_overflow", str(exc)
    if isinstance(exc, ToolRoundLimit):
        return "tool_round_limit", str(exc)
    return describe_error(exc, endpoint)


def finish_step(step: Step, outcome: Outcome, status: str) -> None:
    """Close a model call's step with its status, usage, finish reason and error."""
    step.status = status
    step.finished_at = timezone.now()
    step.prompt_tokens = outcome.prompt_tokens
    step.completion_tokens = outcome.completion_tokens
    step.response = {"finish_reason": outcome.finish_reason, "characters": len(outcome.text)}
    if outcome.tool_calls:
        step.response["tool_calls"] = outcome.tool_calls
    if outcome.error is not None:
        etype, emsg = error_of(outcome.error, outcome.endpoint)
        step.error = {"type": etype, "message": emsg}
    step.save()


def _final_status(outcome: Outcome) -> tuple[str, dict | None]:
    if outcome.cancelled:
        return RunStatus.CANCELLED, None
    if outcome.error is not None:
        etype, emsg = error_of(outcome.error, outcome.endpoint)
        return RunStatus.FAILED, {"type": etype, "message": emsg}
    return RunStatus.SUCCEEDED, None


def finalize(run: Run, outcome: Outcome, totals: Totals, llm_step: Step | None, stream: RunStream, *,
             position: int = 1, counter: TokenCounter | None = None) -> None:
    """Write the run's final state: the answer at ``position`` (the next free one after any tool
    traffic; partial text is kept on failure), usage summed over its model calls, status. After
    commit: ``run_finished`` is sent and compaction considered; then ``done`` is published.
    ``counter``: the run's endpoint's token counter (default: by the run's connection's URL)."""
    status, error = _final_status(outcome)
    fields = {
        "finished_at": timezone.now(),
        "prompt_tokens": totals.prompt_tokens if llm_step is not None else None,
        "completion_tokens": totals.completion_tokens if llm_step is not None else None,
        "usage_counted": totals.counted,
        "finish_reason": outcome.finish_reason,
        "error_type": (error or {}).get("type", ""),
        "error_message": (error or {}).get("message", ""),
    }
    with transaction.atomic():
        if outcome.text or status == RunStatus.SUCCEEDED:
            Message.objects.update_or_create(run=run, position=position, defaults={
                "role": Role.ASSISTANT, "content": outcome.text, "token_count": outcome.completion_tokens,
                "metadata": {"partial": status != RunStatus.SUCCEEDED},
            })
        _count_input_tokens(run, counter or counter_for(base_url_for(run.connection)))
        # Cancelled by the user while running: the status is already "cancelled"; keep it.
        if not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(status=status, **fields):
            Run.objects.filter(pk=run.pk, status=RunStatus.CANCELLED).update(**fields)
            status = run_status(run.pk)
        if llm_step is not None:
            finish_step(llm_step, outcome, status)
    transaction.on_commit(lambda: _after_commit(run.pk, str(status)))
    stream.publish(run.pk, TERMINAL, {
        "status": str(status),
        "error": error,
        "usage": {"prompt_tokens": fields["prompt_tokens"], "completion_tokens": fields["completion_tokens"]},
    })


def _count_input_tokens(run: Run, counter: TokenCounter) -> None:
    first = Message.objects.filter(run=run, position=0, token_count__isnull=True).first()
    if first is not None:
        Message.objects.filter(pk=first.pk).update(token_count=counter.count(first.content))


def _after_commit(run_id, status: str) -> None:
    run = Run.objects.get(pk=run_id)
    run_finished.send(sender=Run, run=run, status=status)
    compaction.consider_after_run(run, status)
