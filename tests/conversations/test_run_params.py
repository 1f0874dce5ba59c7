"""Run parameters and text fields are checked before anything is written (issue 12): every bad
value answers a JSON 4xx naming the field, and no run, message or session row changes."""

from __future__ import annotations

import json

import pytest

from conversations import services
from conversations.models import Message, Run, RunStatus, Session
from tests.support.factories import SessionFactory

pytestmark = pytest.mark.django_db


def post_raw(api, url: str, body: str):
    return api.post(url, data=body, content_type="application/json")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2**70}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": 99}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 5}, "top_p"),
        ({"seed": 2**80}, "seed"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"stop": [""]}, "stop"),
        ({"evil": 1}, "unknown parameters"),
    ],
)
def test_out_of_range_or_mistyped_params_are_a_400_naming_the_field(api, user, params, field):
    session = SessionFactory(owner=user)
    response = post_raw(api, f"/api/sessions/{session.pk}/runs", json.dumps({"input": "hi", "params": params}))
    assert response.status_code == 400, response.content
    assert field in response.json()["detail"]
    assert Run.objects.count() == 0 and Message.objects.count() == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused(api, user, literal):
    session = SessionFactory(owner=user)
    body = '{"input": "hi", "params": {"temperature": ' + literal + '}}'
    response = post_raw(api, f"/api/sessions/{session.pk}/runs", body)
    assert response.status_code == 400, response.content
    assert "temperature" in response.json()["detail"]
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"input": "hi\x00there"}, "input"),
        ({"input": "hi\x1b[31m"}, "input"),
        ({"input": "hi", "model": "gpt\x00"}, "model"),
    ],
)
def test_control_characters_in_text_are_a_400(api, user, payload, field):
    session = SessionFactory(owner=user)
    response = post_raw(api, f"/api/sessions/{session.pk}/runs", json.dumps(payload))
    assert response.status_code == 400, response.content
    assert field in response.json()["detail"]
    assert Run.objects.count() == 0


def test_nul_in_a_session_title_is_a_400(api, user):
    response = post_raw(api, "/api/sessions", json.dumps({"title": "a\x00b"}))
    assert response.status_code == 400 and "title" in response.json()["detail"]
    assert Session.objects.count() == 0


def test_multi_line_input_with_tabs_is_kept_as_typed(user):
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="  line one\n\tline two\r\n")
    assert Message.objects.get(run=run, position=0).content == "  line one\n\tline two\r\n"


def test_valid_params_are_stored_with_their_types(user):
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="hi", params={"temperature": 1, "max_tokens": 64.0, "seed": 7})
    assert run.params == {"temperature": 1.0, "max_tokens": 64, "seed": 7}
    assert isinstance(run.params["temperature"], float) and isinstance(run.params["max_tokens"], int)


def test_regenerating_an_imported_run_keeps_its_own_system_prompt(user):
    """Imported conversations carry a run's system prompt in ``params["system"]``; regenerate and
    edit keep it (it is Arbor's, never sent as a model parameter)."""
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="hi", params={"system": "You are terse.", "max_tokens": 32})
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    run.refresh_from_db()
    again = services.run_regenerate(run=run)
    assert again.params == {"system": "You are terse.", "max_tokens": 32}


@pytest.mark.parametrize(("labels", "tags"), [(["A\x00", "B"], ""), (["A", "B"], "ok,bad\x07tag")])
def test_comparison_labels_and_tags_refuse_control_characters(user, labels, tags):
    from comparisons.services import VariantSpec, comparison_start
    from core.errors import InvalidInput
    from tests.support.factories import RunFactory

    session = SessionFactory(owner=user)
    branch_point = RunFactory(session=session, status=RunStatus.SUCCEEDED)
    with pytest.raises(InvalidInput, match="control character"):
        comparison_start(owner=user, session=session, branch_point=branch_point, prompt="hi", tags=tags,
                         variants=[VariantSpec(label=label) for label in labels])
    assert Run.objects.filter(session=session).count() == 1
