"""The chat's memory bits: the branch's context-utilisation meter, the expandable summary marker
and folded tool traffic, rendered from stored rows (no model or tokenizer calls)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.template import Context, Template
from django.test.utils import CaptureQueriesContext

from conversations.models import Step, StepKind
from memory.models import Compaction, CompactionStatus
from tests.support.factories import SessionFactory, add_chain, add_run

pytestmark = pytest.mark.django_db


def render(source: str, **context) -> str:
    return Template("{% load memory_tags %}" + source).render(Context(context))


def test_branch_meter_shows_utilisation_of_the_last_model_call(user, make_agent):
    agent = make_agent(compaction={"threshold": 0.75})
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 2, agent=agent)
    Step.objects.create(run=runs[-1], kind=StepKind.LLM_CALL, request={"context_tokens": 400, "usable_window": 1000},
                        completion_tokens=100)
    session.active_run = runs[-1]
    session.save()
    html = render("{% branch_meter session %}", session=session)
    assert 'value="0.500"' in html and "500 / 1000 tokens · 50%" in html
    assert 'high="0.75"' in html and "compacts at 75%" in html
    Compaction.objects.create(run=runs[-1], memory_id=agent.memory_id, status=CompactionStatus.PENDING)
    assert "summarising…" in render("{% branch_meter session run %}", session=session, run=runs[-1])


def test_branch_meter_before_any_model_call(user):
    session = SessionFactory(owner=user)
    run = add_run(session, None, "q", None)
    assert "not measured yet" in render("{% branch_meter session run %}", session=session, run=run)
    assert render("{% branch_meter session %}", session=SessionFactory(owner=user)).strip() == ""


def test_summary_marker_is_expandable_and_escaped(user, make_agent):
    agent = make_agent()
    session = SessionFactory(owner=user)
    runs = add_chain(session, None, 3, agent=agent)
    Compaction.objects.create(
        run=runs[1], memory_id=agent.memory_id, status=CompactionStatus.READY, summary="Fact <b>PELICAN</b>",
        utilisation_before=0.85, utilisation_after=0.3, applied=[{"type": "summarize", "acted": True}],
        replaced_message_ids=[1, 2], model="fake-model", prompt_tokens=100, completion_tokens=20,
    )
    with CaptureQueriesContext(connection) as queries:
        html = render("{% for r in runs %}{% summary_marker r %}{% endfor %}", runs=runs)
    assert len(queries) == 1, "one query for every marker of the page"
    assert html.count("<details") == 1 and "Fact &lt;b&gt;PELICAN&lt;/b&gt;" in html
    assert "85% → 30%" in html and "stands for 2 messages" in html


def test_tool_traffic_is_folded(user):
    session = SessionFactory(owner=user)
    calls = [{"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'}}]
    run = add_run(session, None, "q", "two", tool_traffic=[
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "2"},
    ])
    html = render("{% tool_traffic run %}", run=run)
    assert "<details" in html and "1 tool call<" in html
    assert "calculator({&quot;expression&quot;: &quot;1+1&quot;})" in html and ">2</pre>" in html
