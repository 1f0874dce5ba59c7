"""Comparisons on a real Celery worker against the scripted model server: variants run in
parallel, replayed turns chain on ``run_finished``, each turn starts exactly once."""

from __future__ import annotations

import time

import pytest

from comparisons import services
from comparisons.models import Mode, VariantRun
from comparisons.services import VariantSpec
from conversations.models import Message, Role, Run, RunStatus
from conversations.signals import run_finished
from tests.support.factories import SessionFactory, build_chain
from tests.support.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def all_finished(comparison, expected: int):
    def check():
        rows = list(VariantRun.objects.filter(variant__comparison=comparison).select_related("run"))
        return len(rows) == expected and all(r.run.is_finished for r in rows) and rows
    return wait_for(check, timeout=60, message=f"{expected} finished runs")


def test_new_prompt_variants_run_in_parallel(celery_worker, llm_server, user):
    """Both variants' runs are executed by the worker at the same time and answer with their own
    model and system prompt."""
    session = SessionFactory(owner=user)
    runs = build_chain(session, 2)
    comparison = services.comparison_start(
        owner=user, session=session, branch_point=runs[1], prompt="race [[tokens:20]] [[delay:0.05]]",
        variants=[VariantSpec(label="x", model="model-x", system_prompt="You are X."),
                  VariantSpec(label="y", model="model-y", system_prompt="You are Y.", params={"temperature": 0.7})],
    )
    rows = all_finished(comparison, 2)
    a, b = (r.run for r in rows)
    assert a.status == b.status == RunStatus.SUCCEEDED
    assert a.started_at < b.finished_at and b.started_at < a.finished_at, "the two variants did not overlap"
    sent = {req["body"]["model"]: req["body"] for req in llm_server.requests}
    assert sent["model-x"]["messages"][0] == {"role": "system", "content": "You are X."}
    assert sent["model-y"]["messages"][0] == {"role": "system", "content": "You are Y."}
    assert sent["model-y"]["temperature"] == 0.7
    for body in sent.values():
        assert [m["content"] for m in body["messages"][1:]] == ["question 0", "answer 0", "question 1", "answer 1",
                                                                "race [[tokens:20]] [[delay:0.05]]"]


def test_replay_chains_every_turn_exactly_once(celery_worker, llm_server, user):
    """Replaying 3 user turns on 2 variants: each variant's turn t+1 is a child of its turn t, with
    the source branch's user turn t+1 as input; 6 runs in all, and a duplicate ``run_finished``
    starts nothing more."""
    session = SessionFactory(owner=user)
    runs = build_chain(session, 5)
    for i, run in enumerate(runs[2:], start=2):  # make the replayed turns a little slow
        Message.objects.filter(run=run, position=0).update(content=f"question {i} [[tokens:4]] [[delay:0.02]]")
    comparison = services.comparison_start(
        owner=user, session=session, branch_point=runs[1], mode=Mode.REPLAY, source_run=runs[4],
        variants=[VariantSpec(label="keeps-all", model="model-x"),
                  VariantSpec(label="forgets", model="model-y", memory_window_size=0)],
    )
    source_turns = list(
        Message.objects.filter(run__in=runs[2:], position=0, role=Role.USER).order_by("run__depth")
        .values_list("content", flat=True)
    )
    rows = all_finished(comparison, 6)
    for variant in comparison.variants.all():
        chain = [r.run for r in sorted((r for r in rows if r.variant_id == variant.pk), key=lambda r: r.turn)]
        assert [run.status for run in chain] == [RunStatus.SUCCEEDED] * 3
        assert [run.messages.get(position=0).content for run in chain] == source_turns
        assert chain[0].parent_run_id == runs[1].pk
        assert chain[1].parent_run_id == chain[0].pk and chain[2].parent_run_id == chain[1].pk
        assert {run.model for run in chain} == {variant.config["model"]}
    # The memory settings travelled with the variant: the window-0 variant saw only its input.
    last_y = [req["body"] for req in llm_server.requests if req["body"]["model"] == "model-y"][-1]
    assert [m["role"] for m in last_y["messages"]] == ["system", "user"]
    last_x = [req["body"] for req in llm_server.requests if req["body"]["model"] == "model-x"][-1]
    user_contents = [m["content"] for m in last_x["messages"] if m["role"] == "user"]
    assert user_contents == ["question 0", "question 1"] + source_turns

    # A duplicate signal (a redelivered task) for an intermediate run: nothing new starts.
    middle = next(r.run for r in rows if r.turn == 1)
    run_finished.send(sender=Run, run=middle, status=middle.status)
    time.sleep(2)
    assert VariantRun.objects.filter(variant__comparison=comparison).count() == 6
    assert Run.objects.filter(session=session).count() == 5 + 6
