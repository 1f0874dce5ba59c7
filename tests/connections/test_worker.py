"""Connections on a real Celery worker, against two scripted model servers on two ports: each agent's
runs go to its own connection (the servers' request logs prove it, with the right key and
headers), a comparison runs across both, the summariser and nested agents use the caller's
connection, and a disabled, deleted or unreachable connection fails the run with its name."""

from __future__ import annotations

import json
import time

import pytest
from django.urls import reverse
from django.utils import timezone

from comparisons import services as compare
from comparisons.models import VariantRun
from comparisons.selectors import compute_results
from comparisons.services import VariantSpec
from connections.models import Connection
from conversations import services
from conversations.models import Message, Run, RunStatus, Step, StepKind
from memory.models import Agent, Compaction, CompactionStatus
from tests.support.factories import AgentFactory, ConnectionFactory, SessionFactory, build_chain
from tests.support.processes import free_port, wait_for

from .conftest import KEY_A, KEY_B

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def finished(run_id, timeout=40.0) -> Run:
    return wait_for(lambda: (r := Run.objects.get(pk=run_id)).is_finished and r, timeout, message=f"run {run_id}")


def chats(server, *, stream: bool | None = None) -> list[dict]:
    """The chat requests a server received (body plus its authorization and x-* headers)."""
    found = [r for r in server.requests if "messages" in r["body"]]
    return [r for r in found if stream is None or bool(r["body"].get("stream")) == stream]


def last_user(request: dict) -> str:
    return [m for m in request["body"]["messages"] if m["role"] == "user"][-1]["content"]


def test_each_agents_runs_go_to_its_own_connection(celery_worker, llm_server, second_server, user, conn_a, conn_b,
                                                   client):
    """Agent A on server A and agent B on server B: each run reaches only its own server, with its
    own key (and B's extra header); the llm_call step records the connection; the run audit page
    shows the endpoint with the key masked; the worker's log never holds a key."""
    agent_a = AgentFactory(owner=user, name="A", connection=conn_a, model="fake-model")
    agent_b = AgentFactory(owner=user, name="B", connection=conn_b, model="model-b")
    session = SessionFactory(owner=user)
    run_a = finished(services.run_start(session=session, agent=agent_a, input="question for A").pk)
    run_b = finished(services.run_start(session=session, agent=agent_b, input="question for B").pk)
    assert run_a.status == run_b.status == RunStatus.SUCCEEDED, (run_a.error, run_b.error)
    assert (run_a.connection_id, run_b.connection_id) == (conn_a.pk, conn_b.pk)

    on_a, on_b = chats(llm_server), chats(second_server)
    assert [last_user(r) for r in on_a] == ["question for A"]
    assert [last_user(r) for r in on_b] == ["question for B"]
    assert on_a[0]["authorization"] == f"Bearer {KEY_A}" and on_a[0]["body"]["model"] == "fake-model"
    assert on_b[0]["authorization"] == f"Bearer {KEY_B}" and on_b[0]["body"]["model"] == "model-b"
    assert on_b[0]["headers"]["x-team"] == "bee" and "x-team" not in on_a[0]["headers"]
    assert run_b.messages.get(position=1).content == "Echo: question for B"

    step = Step.objects.get(run=run_b, kind=StepKind.LLM_CALL)
    assert step.request["connection"] == "Server B" and step.request["connection_id"] == conn_b.pk
    assert step.request["base_url"] == second_server.base_url
    assert KEY_B not in json.dumps(step.request) and KEY_B not in json.dumps(step.response)

    staff = type(user).objects.create_superuser("conn-auditor", password="pw-123456")
    client.force_login(staff)
    html = client.get(reverse("audit:run", args=[run_b.pk])).content.decode()
    assert "connection <strong>Server B</strong>" in html and second_server.base_url in html
    assert "API key <code>***</code>" in html and KEY_B not in html
    client.force_login(user)
    chat = client.get(reverse("conversations:session_detail", args=[session.pk])).content.decode()
    assert "Server A · fake-model" in chat and "Server B · model-b" in chat  # answers labelled connection · model
    log = celery_worker.output()
    assert KEY_A not in log and KEY_B not in log


def test_a_comparison_across_two_connections(celery_worker, llm_server, second_server, user, conn_a, conn_b,
                                             client):
    """Variant A on server A, variant B on server B, from the same branch point: each server answers
    its own variant; votes group by connection and model."""
    session = SessionFactory(owner=user)
    point = build_chain(session, 2)[-1]
    comparison = compare.comparison_start(
        owner=user, session=session, branch_point=point, prompt="which is better?", blind=False,
        variants=[VariantSpec(label="on A", model="fake-model", connection=conn_a),
                  VariantSpec(label="on B", model="model-b", connection=conn_b)],
    )
    rows = wait_for(lambda: (rs := list(VariantRun.objects.filter(variant__comparison=comparison)
                                        .select_related("run", "variant"))) and len(rs) == 2
                    and all(r.run.is_finished for r in rs) and rs, 60, message="both variants")
    runs = {r.variant.label: r.run for r in rows}
    assert all(r.status == RunStatus.SUCCEEDED for r in runs.values()), [r.error for r in runs.values()]
    assert (runs["on A"].connection_id, runs["on B"].connection_id) == (conn_a.pk, conn_b.pk)
    assert [(r["body"]["model"], last_user(r)) for r in chats(llm_server)] == [("fake-model", "which is better?")]
    assert [(r["body"]["model"], last_user(r)) for r in chats(second_server)] == [("model-b", "which is better?")]
    configs = {r.variant.label: r.variant.config for r in rows}
    assert configs["on B"]["connection"] == "Server B" and configs["on A"]["connection_id"] == conn_a.pk

    compare.vote_cast(comparison=comparison, turn=0, choice="b_better" if comparison.column_order[1] == 1
                      else "a_better")  # variant "on B" wins
    grouped = compute_results(type(comparison).objects.filter(pk=comparison.pk), by="model")["results"]
    assert [(r.label, r.wins, r.losses) for r in grouped] == [("Server B · model-b", 1, 0),
                                                             ("Server A · fake-model", 0, 1)]
    client.force_login(user)
    exported = client.get(reverse("comparisons:results_json"), {"by": "model"}).json()
    assert {c["label"]: c["connection"] for c in exported["configurations"]} == {
        "Server B · model-b": "Server B", "Server A · fake-model": "Server A"}
    page = client.get(reverse("comparisons:detail", args=[comparison.pk])).content.decode()
    assert "Server B · model-b" in page and "Server A · fake-model" in page


def _compacting_agent(user, on: Connection, **strategy) -> Agent:
    """An agent on ``on`` whose small window gets compacted by a summary (``strategy``: more keys of it)."""
    return AgentFactory(
        owner=user, name=f"compacting-{on.pk}-{len(strategy)}", connection=on, model="model-b",
        context_window=700, reserved_output_tokens=100,
        compaction={"threshold": 0.6, "strategies": [{
            "type": "summarize", "keep_recent_turns": 2, "max_tokens": 48,
            "prompt": "[[reply:SUMMARY: the user's dog is Biscuit.]] Summarise.", **strategy}]})


def _run_until_compacted(user, agent) -> Compaction:
    session = SessionFactory(owner=user)
    filler = " ".join(["words"] * 25)
    for i in range(12):
        run = finished(services.run_start(session=session, agent=agent, input=f"turn {i}: {filler}").pk)
        assert run.status == RunStatus.SUCCEEDED, run.error
        crossed = Compaction.objects.filter(run__session=session).first() or (
            time.sleep(0.5) or Compaction.objects.filter(run__session=session).first())
        if crossed:
            break
    else:
        raise AssertionError("utilisation never crossed the threshold")
    return wait_for(lambda: (c := Compaction.objects.get(pk=crossed.pk)).status in (
        CompactionStatus.READY, CompactionStatus.FAILED) and c, timeout=40, message="the compaction")


def test_the_summariser_uses_the_agents_connection_unless_the_policy_names_another(
        celery_worker, llm_server, second_server, user, conn_a, conn_b):
    agent = _compacting_agent(user, conn_b)
    compaction = _run_until_compacted(user, agent)
    assert compaction.status == CompactionStatus.READY, compaction.error
    summaries = [r for r in chats(second_server, stream=False) if "Summary (at most" in last_user(r)]
    assert len(summaries) == 1 and summaries[0]["authorization"] == f"Bearer {KEY_B}"
    assert summaries[0]["body"]["model"] == "model-b"
    assert chats(llm_server) == []  # nothing of this agent reached server A
    step = Step.objects.get(run=compaction.run, kind=StepKind.COMPACTION)
    assert step.response["connection"] == "Server B" and compaction.applied[0]["connection"] == "Server B"

    second_server.reset()
    llm_server.reset()
    named = _compacting_agent(user, conn_b, connection="Server A", model="fake-model")
    compaction = _run_until_compacted(user, named)
    assert compaction.status == CompactionStatus.READY, compaction.error
    assert [r["body"]["model"] for r in chats(llm_server, stream=False)] == ["fake-model"]
    assert chats(llm_server, stream=True) == []  # the runs themselves stayed on B
    assert not [r for r in chats(second_server, stream=False) if "Summary (at most" in last_user(r)]


def test_a_nested_agent_answers_on_the_callers_connection(celery_worker, llm_server, second_server, user, conn_b):
    AgentFactory(owner=user, name="helper", system_prompt="You help.")  # no connection of its own
    caller = AgentFactory(owner=user, name="caller", connection=conn_b, model="model-b",
                          tools=["call_agent"])
    session = SessionFactory(owner=user)
    run = finished(services.run_start(
        session=session, agent=caller,
        input='[[tool:call_agent:{"agent": "helper", "prompt": "nested hello"}]] [[reply:Done.]]').pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    nested = [r for r in chats(second_server, stream=False) if last_user(r) == "nested hello"]
    assert len(nested) == 1 and nested[0]["authorization"] == f"Bearer {KEY_B}"
    assert chats(llm_server) == []
    step = Step.objects.get(run=run, kind=StepKind.AGENT_CALL)
    assert step.request["connection"] == "Server B" and step.status == "succeeded"


def test_a_disabled_or_deleted_connection_fails_the_run_naming_it_and_retry_works(
        celery_worker, second_server, user, conn_b, client):
    agent = AgentFactory(owner=user, name="B", connection=conn_b, model="model-b")
    session = SessionFactory(owner=user)
    Connection.objects.filter(pk=conn_b.pk).update(enabled=False)
    failed = finished(services.run_start(session=session, agent=agent, input="while disabled").pk)
    assert failed.status == RunStatus.FAILED and failed.error_type == "connection_unusable"
    assert "“Server B” is disabled" in failed.error_message
    assert chats(second_server) == []
    client.force_login(user)
    page = client.get(reverse("conversations:session_detail", args=[session.pk])).content.decode()
    assert "“Server B” is disabled" in page and "Retry</button>" in page

    Connection.objects.filter(pk=conn_b.pk).update(enabled=True)
    retried = finished(services.run_regenerate(run=failed, session=session).pk)
    assert retried.status == RunStatus.SUCCEEDED and retried.connection_id == conn_b.pk
    assert [last_user(r) for r in chats(second_server)] == ["while disabled"]

    Connection.objects.filter(pk=conn_b.pk).update(deleted_at=timezone.now())
    gone = finished(services.run_start(session=session, agent=agent, input="after deletion").pk)
    assert gone.status == RunStatus.FAILED and "“Server B” was deleted" in gone.error_message


def test_an_unreachable_connection_fails_naming_it_and_a_broken_stream_keeps_its_text(
        celery_worker, second_server, user, conn_b):
    nowhere = ConnectionFactory(owner=user, name="Nowhere", base_url=f"http://127.0.0.1:{free_port()}/v1")
    agent = AgentFactory(owner=user, name="lost", connection=nowhere)
    session = SessionFactory(owner=user)
    run = finished(services.run_start(session=session, agent=agent, input="hello?").pk, timeout=90)
    assert run.status == RunStatus.FAILED and run.error_type == "connection_error"
    assert run.error_message.startswith("Could not reach the connection “Nowhere” (http://127.0.0.1:")
    assert run.attempts >= 2  # retried with backoff before failing

    breaking = AgentFactory(owner=user, name="breaks", connection=conn_b, model="model-b")
    cut = finished(services.run_start(session=SessionFactory(owner=user), agent=breaking,
                                      input="[[tokens:8]] [[break_after:3]]").pk)
    assert cut.status == RunStatus.FAILED and "“Server B”" in cut.error_message
    partial = Message.objects.get(run=cut, position=1)
    assert partial.content == "w0 w1 w2" and partial.metadata == {"partial": True}
