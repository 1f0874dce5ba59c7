"""Fan-out, fuse and merge executed by a real Celery worker against the scripted model server: the
variants run at once, the fused run's model call is sent the sources, and the turn after a merge is
sent the carried messages (its stored context rebuilds and verifies, GET /api/runs/{id}/context)."""

from __future__ import annotations

import pytest
from django.utils.html import escape

from conversations import services as conversation_services
from conversations.models import Run, RunStatus
from merges import services
from tests.support.factories import AgentFactory, SessionFactory, build_chain
from tests.support.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def finished(run_id, timeout=30.0) -> Run:
    return wait_for(lambda: (r := Run.objects.get(pk=run_id)).is_finished and r, timeout,
                    message=f"run {run_id} to finish")


def test_fan_out_runs_every_variant_and_fuse_sends_the_sources(celery_worker, llm_server, user, api):
    session = SessionFactory(owner=user)
    agent = AgentFactory(owner=user, model="model-b")
    group = services.fan_out(session=session, input="Pick a number", variants=[
        services.Variant(model="model-a"), services.Variant(agent=agent), services.Variant(model="model-c")])
    runs = [finished(run.pk) for run in group.started]
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 3
    sent_models = sorted(r["body"]["model"] for r in llm_server.requests)
    assert sent_models == ["model-a", "model-b", "model-c"]
    fused = services.fuse(session=session, run=runs[1], source_ids=[runs[0].pk, runs[2].pk])
    fused = finished(fused.pk)
    assert fused.status == RunStatus.SUCCEEDED and fused.parent_run_id is None
    sent = llm_server.requests[-1]["body"]["messages"][-1]["content"]
    assert "Answer 1 (Default · model-a):\nEcho: Pick a number" in sent
    assert "Answer 2 (Default · model-c):\nEcho: Pick a number" in sent
    context = api.get(f"/api/runs/{fused.pk}/context").json()
    assert context["verified"] and context["messages"][-1]["content"] == sent
    provenance = api.get(f"/api/runs/{fused.pk}").json()["provenance"]
    assert [s["run_id"] for s in provenance["sources"]] == [str(runs[0].pk), str(runs[2].pk)]


@pytest.mark.parametrize("mode", ["digest", "turns"])
def test_the_turn_after_a_merge_is_sent_the_carried_messages(celery_worker, llm_server, user, api, mode):
    session = SessionFactory(owner=user)
    main = build_chain(session, 3)
    side = build_chain(session, 20, parent=main[0])
    chosen = [side[4], side[11], side[17]]
    if mode == "turns":
        plan = services.merge_plan(session=session, target=main[-1], source=side[-1], mode="turns",
                                   run_ids=[r.pk for r in chosen])
    else:
        plan = services.merge_plan(session=session, target=main[-1], source=side[-1], mode="digest",
                                   digest="The side branch settled on plan C.")
    merge = services.merge_create(session=session, plan=plan)
    llm_server.reset()
    nxt = finished(conversation_services.run_start(session=session, input="So what now?").pk)
    assert nxt.status == RunStatus.SUCCEEDED and nxt.parent_run_id == merge.pk
    sent = llm_server.requests[-1]["body"]["messages"]
    carried = [{"role": m["role"], "content": m["content"]} for m in plan.messages]
    assert sent[-1 - len(carried):-1] == carried
    assert [m["content"] for m in sent[1:7]] == ["question 0", "answer 0", "question 1", "answer 1", "question 2",
                                                 "answer 2"]
    context = api.get(f"/api/runs/{nxt.pk}/context").json()
    assert context["verified"] and context["messages"] == sent
    page = api.get(f"/runs/{nxt.pk}/context")  # the audit page of the call: what the model saw
    assert page.status_code == 200
    assert all(escape(m["content"]) in page.content.decode() for m in carried)


def test_a_digest_draft_is_a_run_the_worker_executes_and_audits(celery_worker, llm_server, user, api):
    session = SessionFactory(owner=user, title="Trip")
    main = build_chain(session, 3)
    side = build_chain(session, 5, parent=main[0])
    answer = api.post(f"/api/runs/{main[-1].pk}/merge/digest-draft", data={"source_run_id": str(side[-1].pk)},
                      content_type="application/json")
    assert answer.status_code == 202, answer.content
    draft = finished(answer.json()["draft_run_id"])
    assert draft.status == RunStatus.SUCCEEDED and draft.prompt_tokens and draft.finished_at
    sent = llm_server.requests[-1]["body"]
    assert sent["max_tokens"] == services.DIGEST_MAX_TOKENS and sent["messages"][-1]["content"].startswith(
        services.DIGEST_INSTRUCTION)
    context = api.get(f"/api/runs/{draft.pk}/context").json()  # audited exactly, like any run
    assert context["verified"] and context["messages"] == sent["messages"]
    output = api.get(f"/api/runs/{draft.pk}").json()["output"]
    assert output.startswith("Echo: ") and "question 4" in output
    preview = api.post(f"/api/runs/{main[-1].pk}/merge", content_type="application/json", data={
        "source_run_id": str(side[-1].pk), "mode": "digest", "draft_run_id": str(draft.pk), "dry_run": True})
    assert preview.status_code == 200, preview.content
    assert preview.json()["digest"] == output.strip() and preview.json()["run_id"] is None
