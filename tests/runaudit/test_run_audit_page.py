"""A run's audit page: its place in the tree, the nested step trace with timings, the exact
request sent to the model (rebuilt and verified, API keys masked), usage, finish reason, errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations import services
from conversations.models import Run, RunStatus, Step, StepKind
from tests.audit import conftest as audit_fixtures
from tests.support.factories import RunFactory, SessionFactory
from tests.support.processes import wait_for

superuser, other_tree = audit_fixtures.superuser, audit_fixtures.other_tree  # the staff user and another user's tree


@pytest.mark.django_db
def test_page_shows_parent_siblings_children_and_path(client, superuser, other_tree):
    """The tree section links the parent, every sibling and every child, and the root path."""
    client.force_login(superuser)
    a = other_tree["a"]
    html = client.get(reverse("audit:run", args=[a.pk])).content.decode()
    tree = html.split("Place in the tree", 1)[1].split("Messages of this run", 1)[0]
    assert f"Parent: <a href=\"{reverse('audit:run', args=[other_tree['root'].pk])}\"" in tree
    siblings = tree.split("Siblings (", 1)[1].split("Children (", 1)[0]
    assert str(other_tree["b"].pk) in siblings and str(a.pk) not in siblings
    children = tree.split("Children (", 1)[1]
    assert str(other_tree["leaf"].pk) in children and str(other_tree["b"].pk) not in children
    assert "root answer" not in tree  # the tree lists runs, the run's own messages come below
    assert "branch a" in html and "answer a" in html


@pytest.mark.django_db
def test_nested_trace_with_timings_errors_and_masked_secrets(client, superuser, user):
    """Steps nest under their parent step (agent call → its model call → tool call), each with
    its offset from the run's start, its duration, tokens and errors; keys in requests are masked."""
    session = SessionFactory(owner=user)
    run = RunFactory(session=session, turn=("compute", "42"), prompt_tokens=30, completion_tokens=4,
                     finish_reason="stop")
    t0 = timezone.now() - timedelta(seconds=10)
    Run.objects.filter(pk=run.pk).update(started_at=t0, finished_at=t0 + timedelta(seconds=3))
    run.refresh_from_db()
    ctx_step = Step.objects.create(run=run, kind=StepKind.CONTEXT, name="build context", started_at=t0,
                                   finished_at=t0 + timedelta(milliseconds=20), status=RunStatus.SUCCEEDED)
    compaction = Step.objects.create(run=run, kind=StepKind.COMPACTION, name="summarise", status=RunStatus.SUCCEEDED,
                                     started_at=t0 + timedelta(milliseconds=30),
                                     finished_at=t0 + timedelta(milliseconds=530))
    agent = Step.objects.create(run=run, kind=StepKind.AGENT_CALL, name="researcher", status=RunStatus.SUCCEEDED,
                                started_at=t0 + timedelta(seconds=1), finished_at=t0 + timedelta(seconds=2.5))
    inner = Step.objects.create(run=run, parent_step=agent, kind=StepKind.LLM_CALL, name="fake-model",
                                started_at=t0 + timedelta(seconds=1.1), finished_at=t0 + timedelta(seconds=2),
                                status=RunStatus.SUCCEEDED, prompt_tokens=12, completion_tokens=3,
                                request={"model": "fake-model", "api_key": "sk-live-SECRET123",
                                         "headers": {"Authorization": "Bearer sk-live-SECRET123"}},
                                response={"finish_reason": "tool_calls"})
    tool = Step.objects.create(run=run, parent_step=inner, kind=StepKind.TOOL_CALL, name="calculator",
                               started_at=t0 + timedelta(seconds=2.1), finished_at=t0 + timedelta(seconds=2.2),
                               status=RunStatus.FAILED, request={"arguments": '{"expr": "6*7"}'},
                               error={"type": "tool_error", "message": "division by zero"})
    client.force_login(superuser)
    response = client.get(reverse("audit:run", args=[run.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "sk-live-SECRET123" not in html
    assert "***" in html

    roots = response.context["steps"]
    assert [n["step"].pk for n in roots] == [ctx_step.pk, compaction.pk, agent.pk]
    agent_node = roots[2]
    assert [n["step"].pk for n in agent_node["children"]] == [inner.pk]
    assert [n["step"].pk for n in agent_node["children"][0]["children"]] == [tool.pk]
    assert agent_node["offset"] == pytest.approx(1.0)
    assert agent_node["duration"] == pytest.approx(1.5)
    assert roots[1]["duration"] == pytest.approx(0.5)
    # Nesting is visible in the HTML too: the tool call's <li> sits inside the agent call's.
    agent_html = html.split(f'id="step-{agent.pk}"', 1)[1]
    assert f'id="step-{inner.pk}"' in agent_html and f'id="step-{tool.pk}"' in agent_html
    assert "division by zero" in html and "nested agent call" in html and "compaction" in html
    assert "finish reason <code>stop</code>" in html
    assert "prompt_tokens 30" in html and "completion_tokens 4" in html


@pytest.mark.django_db(transaction=True)
def test_exact_request_of_a_real_run_is_rebuilt_and_verified(client, celery_worker, settings):
    """For a run executed by a real worker against the model server, the page shows the exact
    messages sent (system prompt, the path, the input), rebuilt from the stored spec and matching
    the SHA-256 recorded at send time; usage and finish reason come from the response; a failed
    run shows its error."""
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create_user("trace-owner", password="pw-123456")
    staff = get_user_model().objects.create_superuser("trace-admin", password="pw-123456")
    settings.OPENAI_API_KEY = "sk-test-DO-NOT-SHOW"
    session = services.session_create(owner=owner, title="trace")
    first = services.run_start(session=session, input="first question")
    wait_for(lambda: Run.objects.get(pk=first.pk).status == RunStatus.SUCCEEDED, 60, message="first run")
    second = services.run_start(session=session, input="second question with detail")
    wait_for(lambda: Run.objects.get(pk=second.pk).status in (RunStatus.SUCCEEDED, RunStatus.FAILED), 60,
             message="second run")
    assert Run.objects.get(pk=second.pk).status == RunStatus.SUCCEEDED, Run.objects.get(pk=second.pk).error
    first.refresh_from_db()
    second.refresh_from_db()

    client.force_login(staff)
    response = client.get(reverse("audit:run", args=[second.pk]))
    assert response.status_code == 200
    llm = [n for n in response.context["steps"] if n["step"].kind == StepKind.LLM_CALL]
    assert len(llm) == 1
    exact = llm[0]["exact"]
    assert exact["verified"] is True, exact
    sent = exact["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "first question" and sent[-1]["content"] == "second question with detail"
    assert sent[2]["content"] == first.messages.get(position=1).content
    assert exact["body"]["model"] == "fake-model"
    html = response.content.decode()
    assert "SHA-256 verified" in html
    assert "sk-test-DO-NOT-SHOW" not in html
    assert f"prompt_tokens {second.prompt_tokens}" in html
    assert second.finish_reason and f"finish reason <code>{second.finish_reason}</code>" in html

    failed = services.run_start(session=session, input="this one fails [[status:400]]")
    wait_for(lambda: Run.objects.get(pk=failed.pk).status == RunStatus.FAILED, 60, message="failed run")
    html = client.get(reverse("audit:run", args=[failed.pk])).content.decode()
    failed.refresh_from_db()
    assert failed.error_type and failed.error_type in html
    assert "400" in html
