"""The JSON API: shapes, status codes, ownership (404 for other users) and bad input (4xx, no writes)."""

from __future__ import annotations

import json
import uuid

import pytest

from conversations.models import Run, RunStatus, Session
from tests.support.factories import RunFactory, SessionFactory, build_chain

pytestmark = pytest.mark.django_db


def post(client, url, data=None, **extra):
    return client.post(url, data=json.dumps(data) if data is not None else "", content_type="application/json", **extra)


def test_openapi_schema_lists_the_endpoints(api):
    schema = api.get("/api/openapi.json").json()
    paths = set(schema["paths"])
    for path in ["/api/sessions", "/api/sessions/{session_id}", "/api/sessions/{session_id}/runs",
                 "/api/sessions/{session_id}/tree", "/api/runs/{run_id}", "/api/runs/{run_id}/context",
                 "/api/runs/{run_id}/events", "/api/runs/{run_id}/cancel", "/api/runs/{run_id}/fork"]:
        assert path in paths, path


def test_create_get_and_list_sessions(api, user, django_capture_on_commit_callbacks):
    response = post(api, "/api/sessions", {"title": "First"})
    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "First" and body["active_run_id"] is None and body["forked_from_run_id"] is None
    assert api.get(f"/api/sessions/{body['id']}").json()["id"] == body["id"]
    post(api, "/api/sessions", {})
    listed = api.get("/api/sessions").json()
    assert listed["count"] == 2 and listed["items"][1]["id"] == body["id"]  # newest first


def test_start_run_returns_202_and_continues_the_active_run(api, user, django_capture_on_commit_callbacks):
    session = SessionFactory(owner=user)
    runs = build_chain(session, 3)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(api, f"/api/sessions/{session.pk}/runs", {"input": "next"})
    assert response.status_code == 202 and response.json()["status"] == "queued"
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.parent_run_id == runs[-1].pk and len(callbacks) == 1
    detail = api.get(f"/api/runs/{run.pk}").json()
    assert detail["input"] == "next" and detail["output"] is None and detail["parent_run_id"] == str(runs[-1].pk)
    assert set(detail["usage"]) == {"prompt_tokens", "completion_tokens"}
    assert set(detail["timings"]) == {"created_at", "started_at", "first_token_at", "finished_at"}


def test_branch_from_any_run_including_fork_ancestors(api, user, django_capture_on_commit_callbacks):
    source = SessionFactory(owner=user)
    runs = build_chain(source, 5)
    fork_id = post(api, f"/api/runs/{runs[2].pk}/fork").json()["session_id"]
    fork = Session.objects.get(pk=fork_id)
    assert fork.forked_from_run_id == runs[2].pk
    response = post(api, f"/api/sessions/{fork_id}/runs", {"input": "from the root", "parent_run_id": str(runs[0].pk)})
    assert response.status_code == 202
    assert Run.objects.get(pk=response.json()["run_id"]).parent_run_id == runs[0].pk
    # A run below the fork point in the source session is not part of the fork's tree.
    response = post(api, f"/api/sessions/{fork_id}/runs", {"input": "x", "parent_run_id": str(runs[4].pk)})
    assert response.status_code == 404


def test_tree_lists_runs_and_marks_shared_ancestors(api, user):
    source = SessionFactory(owner=user)
    runs = build_chain(source, 4)
    RunFactory(session=source, parent_run=runs[1])
    tree = api.get(f"/api/sessions/{source.pk}/tree").json()
    assert len(tree["runs"]) == 5 and not any(r["shared"] for r in tree["runs"])
    fork_id = post(api, f"/api/runs/{runs[1].pk}/fork").json()["session_id"]
    fork_tree = api.get(f"/api/sessions/{fork_id}/tree").json()
    assert [r["run_id"] for r in fork_tree["runs"]] == [str(runs[0].pk), str(runs[1].pk)]
    assert all(r["shared"] for r in fork_tree["runs"])


def test_fork_survives_deleting_the_source_session(api, user, django_capture_on_commit_callbacks):
    source = SessionFactory(owner=user)
    runs = build_chain(source, 3)
    fork_id = post(api, f"/api/runs/{runs[1].pk}/fork").json()["session_id"]
    assert api.delete(f"/api/sessions/{source.pk}").status_code == 204
    assert api.get(f"/api/sessions/{source.pk}").status_code == 404
    assert api.get(f"/api/sessions/{fork_id}/tree").status_code == 200
    assert api.get(f"/api/runs/{runs[0].pk}").status_code == 200
    assert post(api, f"/api/sessions/{fork_id}/runs", {"input": "still works"}).status_code == 202


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"input": ""}, "input: String should have at least 1 character"),
        ({"input": "   "}, "input is empty"),
        ({"input": "x" * 40_000}, "input: String should have at most 32000 characters"),
        ({}, "input"),
        ({"input": 5}, "input"),
        ({"input": "hi", "parent_run_id": "not-a-uuid"}, "parent_run_id"),
        ({"input": "hi", "params": {"evil": 1}}, "unknown parameters"),
    ],
)
def test_bad_run_input_gets_a_clear_4xx_and_writes_nothing(api, user, payload, fragment):
    session = SessionFactory(owner=user)
    response = post(api, f"/api/sessions/{session.pk}/runs", payload)
    assert 400 <= response.status_code < 500
    assert fragment in response.json()["detail"]
    assert Run.objects.count() == 0


def test_malformed_json_is_a_400(api, user):
    session = SessionFactory(owner=user)
    response = api.post(f"/api/sessions/{session.pk}/runs", data="{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["detail"]
    assert Run.objects.count() == 0


def test_unknown_ids_are_404(api):
    for url in [f"/api/sessions/{uuid.uuid4()}", "/api/sessions/nonsense", f"/api/runs/{uuid.uuid4()}",
                f"/api/runs/{uuid.uuid4()}/context", f"/api/sessions/{uuid.uuid4()}/tree"]:
        response = api.get(url)
        assert response.status_code == 404 and response.json()["detail"], url


def test_another_users_sessions_and_runs_are_404(client, user, other_user):
    """Every API URL answers 404 for someone else's session or run, and nothing changes."""
    session = SessionFactory(owner=other_user)
    run = build_chain(session, 2)[-1]
    client.force_login(user)
    gets = [f"/api/sessions/{session.pk}", f"/api/sessions/{session.pk}/tree", f"/api/runs/{run.pk}",
            f"/api/runs/{run.pk}/context", f"/api/runs/{run.pk}/events"]
    for url in gets:
        assert client.get(url).status_code == 404, url
    posts = [(f"/api/sessions/{session.pk}/runs", {"input": "hi"}), (f"/api/runs/{run.pk}/cancel", None),
             (f"/api/runs/{run.pk}/fork", None), (f"/api/runs/{run.pk}/regenerate", None),
             (f"/api/runs/{run.pk}/edit", {"input": "x"}),
             (f"/api/sessions/{session.pk}/active", {"run_id": str(run.pk)})]
    for url, data in posts:
        assert post(client, url, data).status_code == 404, url
    assert client.delete(f"/api/sessions/{session.pk}").status_code == 404
    # Branching in my own session from another user's run is refused too.
    mine = SessionFactory(owner=user)
    branch_from_theirs = {"input": "x", "parent_run_id": str(run.pk)}
    assert post(client, f"/api/sessions/{mine.pk}/runs", branch_from_theirs).status_code == 404
    assert Run.objects.count() == 2 and Session.objects.filter(owner=user).count() == 1
    assert client.get("/api/sessions").json()["count"] == 1


def test_bearer_token_authenticates_and_anonymous_gets_401(client, user, api_token):
    assert client.get("/api/sessions").status_code == 401
    assert client.get("/api/sessions", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.post("/api/sessions", data="{}", content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert response.status_code == 201
    assert Session.objects.get(pk=response.json()["id"]).owner == user


def test_create_api_token_command_prints_a_working_token(client, db):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("create_api_token", "alice", stdout=out, stderr=StringIO())
    token = out.getvalue().strip()
    assert token.startswith("arb_")
    assert client.get("/api/sessions", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_cancel_a_queued_run_and_conflict_when_finished(api, user, django_capture_on_commit_callbacks):
    session = SessionFactory(owner=user)
    with django_capture_on_commit_callbacks(execute=False):
        run_id = post(api, f"/api/sessions/{session.pk}/runs", {"input": "hi"}).json()["run_id"]
    response = post(api, f"/api/runs/{run_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = post(api, f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_context_before_the_model_call_is_409(api, user):
    session = SessionFactory(owner=user)
    run = RunFactory(session=session, status=RunStatus.QUEUED, turn=("hi", None))
    assert api.get(f"/api/runs/{run.pk}/context").status_code == 409


def test_set_active_switches_branch(api, user):
    session = SessionFactory(owner=user)
    root = RunFactory(session=session)
    a = RunFactory(session=session, parent_run=root)
    b = RunFactory(session=session, parent_run=root)
    assert post(api, f"/api/sessions/{session.pk}/active", {"run_id": str(a.pk)}).json()["active_run_id"] == str(a.pk)
    assert Session.objects.get(pk=session.pk).active_run_id == a.pk
    post(api, f"/api/sessions/{session.pk}/active", {"run_id": str(b.pk)})
    assert api.get(f"/api/sessions/{session.pk}").json()["active_run_id"] == str(b.pk)


def test_openapi_schema_needs_a_login_or_a_token(client, api_token):
    """The schema is readable with a Bearer token (API clients) or a browser session; anonymous
    clients get a JSON 401 (never an HTML redirect)."""
    assert client.get("/api/openapi.json").status_code == 401
    assert client.get("/api/openapi.json", HTTP_AUTHORIZATION="Bearer nope").json()["detail"]
    response = client.get("/api/openapi.json", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert response.status_code == 200 and "/api/sessions" in response.json()["paths"]
