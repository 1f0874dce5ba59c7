"""End to end on the real local model (SmolLM2-135M-Instruct under llama.cpp): a 60-turn
conversation with a 1,024-token window compacts at least twice, and the context sent for the last
run still carries a fact from turn 1 through the summary. The test checks the context sent and the
summary text, not the small model's answers."""

from __future__ import annotations

import httpx
import pytest

from conversations import context_spec as ctx
from conversations import services
from conversations.models import Run, RunStatus, Step, StepKind
from engine.context import SUMMARY_HEADER
from memory.models import Compaction, CompactionStatus
from tests.support.factories import SessionFactory
from tests.support.processes import wait_for
from tests.support.scenarios import FACT, TOPICS

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True)]

MODEL = "smollm2-135m-instruct"


def test_sixty_turns_compact_twice_and_keep_the_first_fact(local_model, worker_factory, settings, user, make_agent):
    settings.OPENAI_BASE_URL = local_model
    settings.ARBOR_MODEL = MODEL
    worker_factory(OPENAI_BASE_URL=local_model, ARBOR_MODEL=MODEL, ARBOR_RUN_QUEUE=settings.ARBOR_RUN_QUEUE)
    agent = make_agent(
        model=MODEL, context_window=1024, reserved_output_tokens=128,
        params={"max_tokens": 12, "temperature": 0.0},
        compaction={"threshold": 0.8, "strategies": [
            {"type": "summarize", "keep_recent_turns": 3, "max_tokens": 96}]},
    )
    session = SessionFactory(owner=user)
    inputs = [f"Remember this: my secret code word is {FACT}."] + [
        f"Tell me one short fact about {topic}." for topic in TOPICS]
    assert len(inputs) == 60
    runs = []
    for text in inputs:
        run = services.run_start(session=session, agent=agent, input=text)
        run = wait_for(lambda r=run: (x := Run.objects.get(pk=r.pk)).is_finished and x, timeout=180,
                       message=f"run {text!r}")
        assert run.status == RunStatus.SUCCEEDED, run.error
        runs.append(run)

    compactions = list(Compaction.objects.filter(run__session=session).order_by("run__depth"))
    ready = [c for c in compactions if c.status == CompactionStatus.READY]
    assert len(ready) >= 2, [(c.run.depth, c.status, c.error) for c in compactions]
    assert all(Step.objects.filter(run=c.run, kind=StepKind.COMPACTION).exists() for c in ready)
    assert all(c.base_id is not None for c in ready[1:]), "later summaries build on the earlier ones"

    # Every model call fitted the usable window (1,024 − 128), counted with the model's tokenizer.
    for step in Step.objects.filter(run__session=session, kind=StepKind.LLM_CALL):
        assert step.request["context_tokens"] <= 896 and step.request["usable_window"] == 896

    last = runs[-1]
    step = Step.objects.filter(run=last, kind=StepKind.LLM_CALL).latest("started_at")
    sent = ctx.rebuild(last, step.request["context"])
    assert ctx.digest(sent) == step.request["sha256"]
    summary_id = step.request["context"]["summary"]["id"]
    used = Compaction.objects.get(pk=summary_id)
    assert used.status == CompactionStatus.READY and FACT in used.summary, used.summary
    assert sent[1] == {"role": "system", "content": SUMMARY_HEADER + used.summary}
    assert not any(FACT in m["content"] for m in sent[2:]), "turn 1 itself is long gone from the history"

    # The model's own count of that context (a non-streamed call reports usage) fits too.
    usage = httpx.post(f"{local_model}/chat/completions", timeout=120, json={
        "model": MODEL, "messages": sent, "max_tokens": 1}).json()["usage"]
    assert usage["prompt_tokens"] <= 896
