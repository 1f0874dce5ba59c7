"""Bad requests get a JSON 4xx with ``detail`` (issue 12): pages out of range, oversized bodies,
bodies that are not JSON objects, anonymous writes; the OpenAPI schema documents every status; no
state change on GET; markdown images never load; forking a deleted session's run is 404."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from archive import services as archive_services
from archive.models import ImportJob
from conversations.models import Run, Session
from conversations.templatetags.arbor import render_markdown
from tests.support.factories import RunFactory, SessionFactory, build_chain

pytestmark = pytest.mark.django_db

BIGINT_PLUS = "99999999999999999999"  # > 2^63


def post(client, url, data, **extra):
    body = data if isinstance(data, str | bytes) else json.dumps(data)
    return client.post(url, data=body, content_type="application/json", **extra)


def detail(response) -> str:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.json()["detail"]


# --- 1. pagination --------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "status", "fragment"), [
    (f"page={BIGINT_PLUS}", 400, "page"),
    ("page=0", 400, "page"),
    ("page=-1", 400, "page"),
    ("page=1e400", 400, "page"),
    (f"page_size={BIGINT_PLUS}", 400, "page_size"),
    ("page_size=101", 400, "page_size"),
    ("page_size=0", 400, "page_size"),
    ("page=2147483648", 404, "No page 2147483648"),
    ("page=3&page_size=2", 404, "there are 2 pages of 2"),
    ("page=2", 404, "there is 1 page of 20"),
])
def test_pages_out_of_range_are_json_4xx(api, user, query, status, fragment):
    for _ in range(3):
        SessionFactory(owner=user)
    response = api.get(f"/api/sessions?{query}")
    assert response.status_code == status, response.content
    assert fragment in detail(response)


def test_pages_in_range_and_an_empty_first_page(api, user):
    assert api.get("/api/sessions").json() == {"items": [], "count": 0}
    for _ in range(3):
        SessionFactory(owner=user)
    page = api.get("/api/sessions?page=2&page_size=2").json()
    assert page["count"] == 3 and len(page["items"]) == 1


def test_html_pages_with_any_page_number_show_the_last_page(api, user):
    """The sessions list (the one paginated page) answers 200 with its last page, never 500."""
    SessionFactory(owner=user, title="only one")
    for value in [BIGINT_PLUS, "-5", "0", "abc", "1e400", "2147483648"]:
        response = api.get(f"/?page={value}")
        assert response.status_code == 200 and "only one" in response.content.decode(), value


# --- 2. bodies over the limit ---------------------------------------------------------------------

def test_a_body_over_the_limit_is_a_json_413(api, user, settings):
    session = SessionFactory(owner=user)
    big = json.dumps({"input": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    for url in ["/api/sessions", f"/api/sessions/{session.pk}/runs"]:
        response = post(api, url, big)
        assert response.status_code == 413 and "DATA_UPLOAD_MAX_MEMORY_SIZE" in detail(response), url
    assert Run.objects.count() == 0 and Session.objects.count() == 1


def test_archive_uploads_are_not_bound_by_the_body_limit(client, user, settings, tmp_path, monkeypatch):
    """File parts of a multipart upload do not count towards DATA_UPLOAD_MAX_MEMORY_SIZE; the import
    page has its own limit (ARBOR_IMPORT_MAX_BYTES)."""
    settings.ARBOR_IMPORT_DIR = str(tmp_path / "imports")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    monkeypatch.setattr(archive_services, "_enqueue", lambda job_id: None)
    data = (Path(__file__).parent.parent / "archive" / "data" / "sharegpt.json").read_bytes()
    data = data if len(data) > 1000 else data + b" " * 2000
    client.force_login(user)
    upload = SimpleUploadedFile("sharegpt.json", data, content_type="application/json")
    response = client.post(reverse("archive:upload"), {"file": upload, "format": "auto"})
    assert response.status_code == 302 and ImportJob.objects.filter(owner=user).count() == 1


# --- 3. bodies that are not JSON objects ----------------------------------------------------------

@pytest.mark.parametrize("body", ["[null, null]", "5", '"x"', "null", "true", '{"title": "\\ud800"}'])
def test_a_body_that_is_not_a_json_object_is_a_400(api, user, body):
    session = SessionFactory(owner=user)
    run = build_chain(session, 1)[0]
    for url in ["/api/sessions", f"/api/sessions/{session.pk}/runs", f"/api/sessions/{session.pk}/active",
                f"/api/runs/{run.pk}/edit"]:
        response = post(api, url, body)
        assert response.status_code == 400, (url, response.content)
        assert detail(response).startswith("Cannot parse request body"), url
    assert Session.objects.count() == 1 and Run.objects.count() == 1


def test_an_empty_body_still_creates_an_untitled_session(api):
    assert api.post("/api/sessions", content_type="application/json").status_code == 201


# --- 4. anonymous writes --------------------------------------------------------------------------

def test_anonymous_writes_are_401_and_csrf_still_guards_browsers(user):
    anonymous = Client(enforce_csrf_checks=True)
    for url in ["/api/sessions", f"/api/sessions/{SessionFactory(owner=user).pk}/runs"]:
        response = post(anonymous, url, {"input": "x"})
        assert response.status_code == 401 and "Authentication required" in detail(response), url
    assert anonymous.delete(f"/api/sessions/{Session.objects.first().pk}").status_code == 401
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert post(browser, "/api/sessions", {}).status_code == 403  # logged in, no CSRF token: refused
    browser.get("/")  # sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    assert post(browser, "/api/sessions", {}, HTTP_X_CSRFTOKEN=token).status_code == 201
    assert Session.objects.filter(owner=user).count() == 2


# --- 5. the OpenAPI schema documents every status -------------------------------------------------

DOCUMENTED = {  # operation → its non-2xx statuses besides 401 and 503 (which every operation lists)
    ("post", "/api/sessions"): {400, 413},
    ("get", "/api/sessions"): {400, 404},
    ("get", "/api/sessions/{session_id}"): {404},
    ("delete", "/api/sessions/{session_id}"): {404},
    ("post", "/api/sessions/{session_id}/runs"): {400, 404, 409, 413, 429},
    ("get", "/api/sessions/{session_id}/tree"): {404},
    ("post", "/api/sessions/{session_id}/active"): {400, 404, 413},
    ("get", "/api/runs/{run_id}"): {404},
    ("get", "/api/runs/{run_id}/context"): {404, 409, 500},
    ("get", "/api/runs/{run_id}/events"): {404},
    ("post", "/api/runs/{run_id}/cancel"): {404, 409},
    ("post", "/api/runs/{run_id}/fork"): {400, 404, 409},
    ("get", "/api/sessions/{session_id}/labels"): {404},
    ("post", "/api/sessions/{session_id}/labels"): {400, 404, 409, 413},
    ("patch", "/api/sessions/{session_id}/labels/{label_id}"): {400, 404, 409, 413},
    ("delete", "/api/sessions/{session_id}/labels/{label_id}"): {404},
    ("get", "/api/runs/{a}/diff/{b}"): {404},
    ("post", "/api/runs/{run_id}/regenerate"): {400, 404, 409, 429},
    ("post", "/api/runs/{run_id}/edit"): {400, 404, 409, 413, 429},
    ("post", "/api/sessions/{session_id}/fan-out"): {400, 404, 409, 413, 429},
    ("post", "/api/runs/{run_id}/fuse"): {400, 404, 409, 413, 429},
    ("post", "/api/runs/{run_id}/merge"): {400, 404, 409, 413},
    ("post", "/api/runs/{run_id}/merge/digest-draft"): {400, 404, 409, 413, 429},
    ("post", "/api/runs/{run_id}/merge/undo"): {404, 409},
    # comparisons
    ("get", "/api/comparisons/results"): {400},
    ("get", "/api/comparisons/results.csv"): {400},
    ("post", "/api/comparisons"): {400, 404, 409, 413, 429},
    ("get", "/api/comparisons"): {400, 404},
    ("get", "/api/comparisons/{comparison_id}"): {404},
    ("get", "/api/comparisons/{comparison_id}/turns/{turn}/columns/{column}"): {400, 404},
    ("post", "/api/comparisons/{comparison_id}/turns/{turn}/vote"): {400, 404, 409, 413},
    ("post", "/api/comparisons/{comparison_id}/reveal"): {404, 409},
    ("post", "/api/comparisons/{comparison_id}/resume"): {404, 429},
    ("post", "/api/comparisons/{comparison_id}/columns/{column}/open"): {400, 404, 409},
    # evaluation: rubrics, judges, agreement, suites
    ("get", "/api/rubrics/templates"): set(),
    ("get", "/api/rubrics"): set(),
    ("post", "/api/rubrics"): {400, 413},
    ("put", "/api/rubrics/{rubric_id}"): {400, 404, 413},
    ("post", "/api/comparisons/{comparison_id}/judgings"): {400, 404, 409, 413, 429},
    ("get", "/api/comparisons/{comparison_id}/judgings"): {404},
    ("get", "/api/comparisons/{comparison_id}/judgings/{judging_id}"): {404},
    ("get", "/api/comparisons/{comparison_id}/agreement"): {404},
    ("get", "/api/suites"): set(),
    ("post", "/api/suites"): {400, 404, 413},
    ("get", "/api/suites/{suite_id}"): {404},
    ("post", "/api/suites/{suite_id}/runs"): {400, 404, 409, 413, 429},
    # memory search
    ("get", "/api/search"): {400, 404},
    ("get", "/api/branches/{run_id}"): {404},
    # archive
    ("post", "/api/imports"): {400, 413},
    ("get", "/api/imports"): {400, 404},
    ("get", "/api/imports/{job_id}"): {404},
    ("get", "/api/sessions/{session_id}/export/{format}"): {400, 404},
    ("get", "/api/connections"): {400, 404},
    ("post", "/api/connections"): {400, 403, 413},
    ("get", "/api/connections/{connection_id}"): {404},
    ("patch", "/api/connections/{connection_id}"): {400, 403, 404, 413},
    ("delete", "/api/connections/{connection_id}"): {403, 404, 409},
    ("post", "/api/connections/{connection_id}/refresh"): {403, 404},
    ("post", "/api/connections/{connection_id}/health"): {404},
    ("post", "/api/connections/{connection_id}/models"): {400, 403, 404, 409, 413},
    ("patch", "/api/connections/{connection_id}/models/{model_id}"): {400, 403, 404, 413},
    ("delete", "/api/connections/{connection_id}/models/{model_id}"): {403, 404},
    ("get", "/api/agents"): {400, 404},
    ("post", "/api/agents"): {400, 403, 404, 413},
    ("get", "/api/agents/{agent_id}"): {404},
    ("patch", "/api/agents/{agent_id}"): {400, 403, 404, 413},
    ("delete", "/api/agents/{agent_id}"): {403, 404},
    ("post", "/api/agents/{agent_id}/duplicate"): {400, 404},
    ("get", "/api/runs/{run_id}/pins"): {404},
    ("post", "/api/runs/{run_id}/pins"): {400, 404, 409, 413},
    ("delete", "/api/pins/{pin_id}"): {404},
    ("get", "/api/compactions/{compaction_id}"): {404},
    ("post", "/api/compactions/{compaction_id}/summary"): {400, 404, 409, 413},
    ("post", "/api/compactions/{compaction_id}/undo"): {404, 409},
    ("post", "/api/runs/{run_id}/compact"): {400, 404, 409},
    ("get", "/api/runs/{run_id}/settings"): {404},
    ("put", "/api/runs/{run_id}/settings"): {400, 404, 413},
}


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield (method, path), operation


def test_every_operation_documents_its_statuses_with_one_error_schema(api):
    schema = api.get("/api/openapi.json").json()
    detail_schema = schema["components"]["schemas"]["Detail"]
    assert detail_schema["required"] == ["detail"] and detail_schema["properties"]["detail"]["type"] == "string"
    seen = set()
    for key, operation in _operations(schema):
        seen.add(key)
        codes = {int(code) for code in operation["responses"]}
        errors = {code for code in codes if code >= 400}
        assert errors == {401, 503} | DOCUMENTED[key], key
        assert len(codes - errors) == 1, key  # one success status
        for code in errors:
            content = operation["responses"][str(code)]["content"]["application/json"]["schema"]
            assert content == {"$ref": "#/components/schemas/Detail"}, (key, code)
    assert seen == set(DOCUMENTED)


def _validate(schema: dict, key: tuple, response) -> None:
    """``response`` has a status the operation documents and, for an error, matches Detail."""
    documented = schema["paths"][key[1]][key[0]]["responses"]
    assert str(response.status_code) in documented, (key, response.status_code)
    if response.status_code >= 400:
        body = response.json()
        assert set(schema["components"]["schemas"]["Detail"]["required"]) <= set(body)
        assert isinstance(body["detail"], str) and body["detail"], body


def test_real_error_responses_match_the_schema(api, user, client):
    schema = api.get("/api/openapi.json").json()
    session = SessionFactory(owner=user)
    run = RunFactory(session=session)
    cases = [
        (("get", "/api/sessions/{session_id}"), api.get("/api/sessions/nope")),
        (("get", "/api/sessions"), api.get(f"/api/sessions?page={BIGINT_PLUS}")),
        (("get", "/api/sessions"), api.get("/api/sessions?page=9")),
        (("post", "/api/sessions"), post(api, "/api/sessions", "[null, null]")),
        (("post", "/api/sessions/{session_id}/runs"), post(api, f"/api/sessions/{session.pk}/runs", {"input": ""})),
        (("post", "/api/runs/{run_id}/cancel"), post(api, f"/api/runs/{run.pk}/cancel", {})),
        (("get", "/api/runs/{run_id}/context"), api.get(f"/api/runs/{run.pk}/context")),
        (("post", "/api/sessions/{session_id}/runs"),
         post(api, f"/api/sessions/{session.pk}/runs", "x" * (2**22))),
        (("post", "/api/sessions"), post(Client(), "/api/sessions", {})),
    ]
    statuses = set()
    for key, response in cases:
        _validate(schema, key, response)
        statuses.add(response.status_code)
    assert statuses == {400, 401, 404, 409, 413}


# --- 6. no state change on GET; markdown images never load ----------------------------------------

def test_opening_a_branch_needs_a_post(api, user):
    session = SessionFactory(owner=user)
    root = RunFactory(session=session)
    a, b = RunFactory(session=session, parent_run=root), RunFactory(session=session, parent_run=root)
    session.active_run = b
    session.save()
    assert api.get(f"/s/{session.pk}/runs/{a.pk}/open").status_code == 405
    assert Session.objects.get(pk=session.pk).active_run_id == b.pk
    assert api.post(f"/s/{session.pk}/runs/{a.pk}/open").status_code == 302
    assert Session.objects.get(pk=session.pk).active_run_id == a.pk


def test_markdown_images_are_links_never_images(api, user):
    url = "/s/00000000-0000-4000-8000-000000000000/runs/00000000-0000-4000-8000-000000000001/open"
    html = render_markdown(f"look ![the *chart*]({url} \"t\") and ![](https://example.com/x.png)")
    assert "<img" not in html
    assert f'<a href="{url}" title="t" rel="noopener noreferrer nofollow">image: the chart</a>' in html
    assert '<a href="https://example.com/x.png" rel="noopener noreferrer nofollow">image: https://example.com/x.png' \
        in html
    session = SessionFactory(owner=user)
    RunFactory(session=session, turn=("show me", f"![x]({url})"))
    page = api.get(f"/s/{session.pk}/").content.decode()
    assert not re.search(r"<img[^>]+/open", page)


# --- 7. forking follows the rule of edit and regenerate -------------------------------------------

def test_a_deleted_sessions_runs_are_404_for_fork_edit_and_regenerate(api, user, django_capture_on_commit_callbacks):
    source = SessionFactory(owner=user)
    runs = build_chain(source, 3)
    fork_id = post(api, f"/api/runs/{runs[1].pk}/fork", {}).json()["session_id"]
    assert api.delete(f"/api/sessions/{source.pk}").status_code == 204
    for action, body in [("fork", {}), ("edit", {"input": "x"}), ("regenerate", {})]:
        response = post(api, f"/api/runs/{runs[1].pk}/{action}", body)
        assert response.status_code == 404 and detail(response), action
    # Through the live fork, its shared ancestors can still be acted on.
    response = post(api, f"/api/runs/{runs[0].pk}/fork?session_id={fork_id}", {})
    assert response.status_code == 201
    assert Session.objects.get(pk=response.json()["session_id"]).forked_from_run_id == runs[0].pk
    # ... but not a run outside the fork's tree.
    assert post(api, f"/api/runs/{runs[2].pk}/fork?session_id={fork_id}", {}).status_code == 404
    assert post(api, f"/api/runs/{runs[2].pk}/regenerate?session_id={fork_id}", {}).status_code == 404
