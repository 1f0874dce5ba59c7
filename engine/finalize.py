"""The end of a run: its final state written once, then ``done``, ``run_finished`` and compaction."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from connections.endpoint import Endpoint
from conversations.models import Message, Role, Run, RunStatus, Step
from conversations.signals import run_finished
from core.outage import until_database_answers
from streams.backends import TERMINAL, RunStream

from . import compaction
from .context import ContextOverflow
from .llm import describe_error
from .model_call import BrokenStream, DeadlineExceeded, Outcome, run_status
from .turn import Totals, Turn


class ToolRoundLimit(Exception):
    """The model still asked for tools after the last allowed round."""


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
             turn: Turn | None = None) -> None:
    """Write the run's final state in one transaction: the answer at the turn's next free position
    (partial text is kept on failure), then one UPDATE of the run (status, usage summed over its
    model calls, first token time, finish reason, error), then the model call's step; while the
    database is unreachable the model's answer waits in memory and the write is tried again
    (:func:`core.outage.until_database_answers`). After commit
    ``done`` is published first; then ``run_finished`` is sent and compaction measures the context a
    child would start from, on the turn's path and with its counter and budget (no second read).
    ``turn``: None when the run failed before its turn started (its connection is unusable)."""
    status, error = _final_status(outcome)
    fields = {
        "finished_at": timezone.now(),
        "first_token_at": totals.first_token_at,
        "prompt_tokens": totals.prompt_tokens if llm_step is not None else None,
        "completion_tokens": totals.completion_tokens if llm_step is not None else None,
        "usage_counted": totals.counted,
        "finish_reason": outcome.finish_reason,
        "error_type": (error or {}).get("type", ""),
        "error_message": (error or {}).get("message", ""),
    }
    answer, status = until_database_answers(lambda: _write_final(run, outcome, status, fields, llm_step, turn),
                                            what=f"run {run.pk}: writing its final state")
    stream.publish(run.pk, TERMINAL, {
        "status": str(status),
        "error": error,
        "usage": {"prompt_tokens": fields["prompt_tokens"], "completion_tokens": fields["completion_tokens"]},
    })
    for name, value in fields.items():
        setattr(run, name, value)
    run.status = status
    transaction.on_commit(lambda: _after_commit(run, str(status), turn, answer))


def _write_final(run: Run, outcome: Outcome, status: str, fields: dict, llm_step: Step | None,
                 turn: Turn | None) -> tuple[Message | None, str]:
    """The answer, the run's UPDATE and the model call's step in one transaction (safe to repeat:
    the answer is an upsert, the UPDATE conditional). Returns the answer and the status written."""
    answer = None
    with transaction.atomic():
        if outcome.text or status == RunStatus.SUCCEEDED:
            answer = _write_answer(run, turn.position if turn else 1, outcome, partial=status != RunStatus.SUCCEEDED)
        # Cancelled by the user while running: the status is already "cancelled"; keep it.
        if not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(status=status, **fields):
            Run.objects.filter(pk=run.pk, status=RunStatus.CANCELLED).update(**fields)
            status = run_status(run.pk)
        if llm_step is not None:
            finish_step(llm_step, outcome, status)
    return answer, status


def _write_answer(run: Run, position: int, outcome: Outcome, *, partial: bool) -> Message:
    """The answer at ``position``: one INSERT, which replaces what an earlier attempt may have left
    there (``ON CONFLICT (run, position) DO UPDATE``). Its metadata is ``{"partial": True}`` for
    kept partial text, else empty (stored as nothing, and the path read converts nothing)."""
    answer = Message(run=run, position=position, role=Role.ASSISTANT, content=outcome.text,
                     token_count=outcome.completion_tokens, metadata={"partial": True} if partial else {})
    Message.objects.bulk_create([answer], update_conflicts=True, unique_fields=["run", "position"],
                                update_fields=["role", "content", "token_count", "metadata"])
    return answer


def _after_commit(run: Run, status: str, turn: Turn | None, answer: Message | None) -> None:
    """``run_finished``, then compaction's measuring on the turn's path (with the answer appended)."""
    run_finished.send(sender=Run, run=run, status=status)
    if turn is None:
        compaction.consider_after_run(run, status)
        return
    if answer is not None:
        answer.run = run
        turn.path.append(answer)
    compaction.consider_after_run(run, status, path=turn.path, memory_ids=turn.memory_ids, counter=turn.counter,
                                  budget=turn.budget)
