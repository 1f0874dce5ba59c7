"""Accounts and safety: login required everywhere but the login page; another user's objects are
404 in every view, API endpoint and stream; inside workers a run reads only its own tree;
CSRF on every state change; Content-Security-Policy with nonces on every page."""

from __future__ import annotations

import contextlib
import re
import uuid

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiToken
from audit.models import AuditLog
from conversations.models import Message, Run, RunStatus, Session
from tests.audit.conftest import MARKER
from tests.audit.urlwalk import Route, routes
from tests.support.factories import (
    AgentFactory,
    BranchLabelFactory,
    BranchShareFactory,
    ComparisonFactory,
    ConnectionFactory,
    ImportJobFactory,
    RunFactory,
    SessionFactory,
)

METHODS = ("get", "post", "put", "patch", "delete")
PUBLIC = {"login", "admin:login"}  # the login pages: the only pages open to anonymous visitors
# Open to anyone who holds a signed token (a shared branch): a wrong token is 404, never a login page.
PUBLIC_BY_TOKEN = {"branches:shared"}
# A permanent redirect to a static file, open to anyone (browsers ask for it before logging in).
PUBLIC_REDIRECTS = {"/favicon.ico": "/static/arbor/favicon.svg"}


def _anonymous_url(route: Route) -> str:
    if route.name == "admin:app_list":
        return reverse("admin:app_list", kwargs={"app_label": "conversations"})
    if route.is_regex:  # the admin's catch-all
        return "/admin/no/such/page/"
    values = {name: (uuid.uuid4() if conv == "uuid" else 1) for conv, name in route.params}
    return route.url(values)


@pytest.mark.django_db
def test_every_url_requires_a_login_except_the_login_pages(client):
    """Walking every URL pattern anonymously, with every method: pages redirect to the login page
    (the admin to its own), the API answers 401 (405 for a method the path does not have); only
    the login pages answer 200. Nothing is created."""
    login = reverse("login")
    checked = 0
    for route in routes():
        url = _anonymous_url(route)
        for method in METHODS:
            response = getattr(client, method)(url)
            status = response.status_code
            where = f"{method.upper()} {url} ({route.name})"
            if route.name in PUBLIC:
                assert status in (200, 302, 405), where
                continue
            if url in PUBLIC_REDIRECTS:
                assert status == 301 and response["Location"] == PUBLIC_REDIRECTS[url], f"{where}: {status}"
                continue
            if route.name in PUBLIC_BY_TOKEN:
                assert status == (404 if method == "get" else 405), f"{where}: {status}"
                continue
            if route.name == "api:api-root":  # django-ninja's empty root: nothing there for anyone
                assert status == 404, f"{where}: {status}"
            elif url.startswith("/api/"):
                assert status in (401, 405), f"{where}: {status}"
                if status == 401:
                    assert "Authentication required" in response.json()["detail"]
            elif url.startswith("/admin/"):
                assert status == 302, f"{where}: {status}"
                assert response["Location"].startswith((login + "?next=", reverse("admin:login"))), where
            else:
                assert status in (302, 405), f"{where}: {status}"
                if status == 302:
                    assert response["Location"].startswith(login + "?next="), f"{where}: {response['Location']}"
            checked += 1
    assert checked > 100
    assert not Session.objects.exists() and not Run.objects.exists()


@pytest.mark.django_db
def test_api_docs_and_schema_need_a_login(client, user):
    """The OpenAPI schema and docs are not public: anonymous clients get a JSON 401 (no redirect)."""
    for name in ("api:openapi-json", "api:openapi-view"):
        response = client.get(reverse(name))
        assert response.status_code == 401 and response["Content-Type"].startswith("application/json")
    client.force_login(user)
    assert client.get(reverse("api:openapi-json")).status_code == 200


# --- another user's ids, everywhere ---------------------------------------------------------------

@pytest.fixture
def other_objects(other_user, other_tree):
    """Every kind of id a URL takes, belonging to ``other_user``."""
    values = {"session_id": other_tree["session"].pk, "run_id": other_tree["a"].pk}
    comparison = ComparisonFactory(owner=other_user, session=other_tree["session"],
                                   branch_point=other_tree["root"], prompts=["p"])
    values["comparison_id"] = comparison.pk
    values.update({"turn": 0, "column": 0, "format": "arbor", "a": other_tree["a"].pk, "b": other_tree["leaf"].pk})
    # branch tools: a label, a prune and a share link of theirs; the shared page takes a token, and
    # theirs is revoked (a live token is a link anyone may open, by design: tests/branches/test_branches.py)
    from branches import selectors as branch_reads
    from conversations.models import Prune

    values["label_id"] = BranchLabelFactory(session=other_tree["session"], run=other_tree["a"], name="x").pk
    values["prune_id"] = Prune.objects.create(session=other_tree["session"], run=other_tree["leaf"]).pk
    share = BranchShareFactory(session=other_tree["session"], run=other_tree["leaf"], revoked_at=timezone.now())
    values.update({"share_id": share.pk, "token": branch_reads.share_token(share)})
    job = ImportJobFactory(owner=other_user, filename="x.json", path="/nonexistent")
    values.update({"job_id": job.pk, "import_id": job.pk})
    values["agent_id"] = AgentFactory(owner=other_user, name=f"agent {MARKER}").pk
    from memory.models import Compaction, CompactionStatus, Pin

    values["pin_id"] = Pin.objects.create(run=other_tree["a"]).pk  # pins and compactions of theirs
    values["compaction_id"] = Compaction.objects.create(run=other_tree["a"], status=CompactionStatus.READY,
                                                        summary=f"summary {MARKER}").pk
    from comparisons.models import Judging, Rubric, Suite  # evaluation: a judging, a rubric, a suite of theirs

    values["judging_id"] = Judging.objects.create(comparison=comparison, agent_name="j", model="m", rubric_name="r",
                                                  rubric_text="t", session=other_tree["session"]).pk
    values["rubric_id"] = Rubric.objects.create(owner=other_user, name=f"rubric {MARKER}", text=MARKER).pk
    values["suite_id"] = Suite.objects.create(owner=other_user, name=f"suite {MARKER}").pk
    from connections.models import ConnectionModel

    connection = ConnectionFactory(owner=other_user, name=f"connection {MARKER}", base_url="http://h/v1",
                                   api_key=MARKER)
    values["connection_id"] = connection.pk
    values["model_id"] = ConnectionModel.objects.create(connection=connection, name=f"model {MARKER}").pk
    return values


def _snapshot(other_tree) -> dict:
    session = Session.objects.get(pk=other_tree["session"].pk)
    return {
        "session": (session.title, session.active_run_id, session.deleted_at),
        "runs": sorted(str(pk) for pk in Run.objects.filter(session=session).values_list("pk", flat=True)),
        "statuses": sorted(Run.objects.filter(session=session).values_list("status", flat=True)),
        "messages": Message.objects.filter(run__session=session).count(),
        "forks": Session.objects.filter(forked_from_run__session=session).count(),
    }


PAYLOAD = {"input": "injected", "title": "hijacked", "name": "hijacked", "run_id": None, "parent_run_id": None,
           "choice": "a_better"}


@pytest.mark.django_db
def test_every_url_with_another_users_ids_is_404_and_changes_nothing(client, user, other_tree, other_objects):
    """Logged in as one user, every URL that takes an id (pages, API, SSE streams, comparisons,
    archive, audit, memory) called with another user's ids, with every method, answers 404 (or
    405 for a method the URL does not take: nothing revealed) — and the other user's data is
    unchanged."""
    client.force_login(user)
    before = _snapshot(other_tree)
    payload = {**PAYLOAD, "run_id": str(other_tree["a"].pk), "parent_run_id": str(other_tree["root"].pk)}
    unknown: set[str] = set()
    checked = []
    for route in routes():
        if route.name.startswith("admin:") or not route.params or route.is_regex:
            continue
        missing = {name for _, name in route.params if name not in other_objects}
        if missing:
            unknown |= {f"{route.name}: {name}" for name in missing}
            continue
        url = route.url(other_objects)
        statuses = {}
        for method in METHODS:
            if url.startswith("/api/"):
                response = getattr(client, method)(url, data=payload, content_type="application/json")
            elif method == "post":
                response = client.post(url, payload)
            else:
                response = getattr(client, method)(url)
            statuses[method] = response.status_code
            if response.status_code == 400 and url.startswith("/api/"):
                # The shared payload has fields this operation does not take (refused by the body's
                # schema before any lookup, the same for any id): again with the fields it takes.
                extra = {e["loc"][-1] for e in response.json()["errors"] if e.get("type") == "extra_forbidden"}
                assert extra, response.content
                response = getattr(client, method)(url, data={k: v for k, v in payload.items() if k not in extra},
                                                   content_type="application/json")
                statuses[method] = response.status_code
            assert response.status_code in (404, 405), f"{method.upper()} {url} ({route.name}): {response.status_code}"
        assert 404 in statuses.values(), f"{url} ({route.name}) answers no method: {statuses}"
        checked.append(route.name)
    assert not unknown, f"URL parameters this test cannot fill yet (add them to other_objects): {sorted(unknown)}"
    assert {"conversations:run_stream", "api:run_events", "api:get_run_context", "audit:run"} <= set(checked)
    assert len(checked) >= 25
    assert _snapshot(other_tree) == before
    assert not AuditLog.objects.filter(action__startswith="run.").exists()
    # Ids in query strings too: exporting one's own session along another user's run is 404.
    mine = SessionFactory(owner=user)
    try:
        url = reverse("archive:session_export", args=[mine.pk, "markdown"])
    except Exception:  # the archive app may not export yet
        return
    assert client.get(url, {"run": str(other_tree["leaf"].pk)}).status_code == 404


@pytest.mark.django_db
def test_lists_and_pages_without_ids_never_show_another_users_data(client, user, other_tree, other_objects):
    """Lists, results, exports and the API's collections show only the caller's own data."""
    SessionFactory(owner=user, title="my own session")
    client.force_login(user)
    checked = 0
    for route in routes():
        if route.name.startswith("admin:") or route.params or route.is_regex or route.name in PUBLIC:
            continue
        url = route.url({})
        response = client.get(url)
        if response.status_code != 200:
            continue
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert MARKER.encode() not in body, f"{url} ({route.name}) shows another user's data"
        checked += 1
    assert checked >= 4
    response = client.get(reverse("conversations:session_list"))
    assert b"my own session" in response.content


@pytest.mark.django_db
def test_api_with_a_bearer_token_cannot_reach_another_users_objects(client, user, other_tree):
    """The same holds for token-authenticated API calls: 404, as for ids that do not exist."""
    token = ApiToken.issue(user=user)[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    session, run = other_tree["session"], other_tree["a"]
    assert client.get(f"/api/sessions/{session.pk}", **auth).status_code == 404
    assert client.get(f"/api/runs/{run.pk}/events", **auth).status_code == 404
    assert client.post(f"/api/runs/{run.pk}/fork", **auth).status_code == 404
    mine = SessionFactory(owner=user)
    response = client.post(f"/api/sessions/{mine.pk}/runs", data={"input": "x", "parent_run_id": str(run.pk)},
                           content_type="application/json", **auth)
    assert response.status_code == 404  # branching from another user's run
    assert not Run.objects.filter(session=mine).exists()


@pytest.mark.django_db(transaction=True)
def test_a_run_executed_by_a_worker_reads_only_its_own_tree(client, celery_worker):
    """Inside the Celery worker, building a run's context reads only the run's own path: another
    user's messages under the same memory_id never reach the model (checked on the exact request
    rebuilt from the step, and on what the model server received)."""
    from django.contrib.auth import get_user_model

    from conversations import context_spec as ctx
    from conversations import services
    from conversations.models import Step, StepKind
    from tests.support.processes import wait_for

    users = get_user_model().objects
    me, them = users.create_user("me-worker", password="pw-123456"), users.create_user("them-worker", password="x")
    theirs = SessionFactory(owner=them, title=MARKER)
    RunFactory(session=theirs, turn=(f"secret {MARKER}", f"reply {MARKER}"))
    session = services.session_create(owner=me, title="mine")
    run = services.run_start(session=session, input="what do you know?")
    wait_for(lambda: Run.objects.get(pk=run.pk).status in (RunStatus.SUCCEEDED, RunStatus.FAILED), 60, message="run")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    step = Step.objects.filter(run=run, kind=StepKind.LLM_CALL).first()
    sent = ctx.rebuild(run, step.request["context"])
    assert ctx.digest(sent) == step.request["sha256"]
    assert MARKER not in repr(sent)
    answer = run.messages.get(role="assistant").content
    assert MARKER not in answer  # the scripted model echoes what it was sent


# --- CSRF -----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_every_state_change_without_a_csrf_token_is_403(user, other_tree):
    """With CSRF checks on (as in a browser), every POST to a page — each URL pattern, with the
    user's own ids, so only CSRF can stop it — answers 403 and changes nothing; with the token
    the same kind of request goes through."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    session = SessionFactory(owner=user, title="mine")
    root = RunFactory(session=session)
    values = {"session_id": session.pk, "run_id": root.pk, "comparison_id": uuid.uuid4(), "turn": 0, "column": 0,
              "job_id": uuid.uuid4(), "import_id": uuid.uuid4(), "agent_id": 1, "format": "arbor",
              "label_id": uuid.uuid4(), "prune_id": uuid.uuid4(), "share_id": uuid.uuid4(), "token": "x",
              "connection_id": 1, "model_id": 1}
    runs_before = Run.objects.count()
    checked = 0
    for route in routes():
        if route.is_regex or route.name.startswith("api:"):
            continue
        if any(name not in values for _, name in route.params):
            continue
        url = route.url(values)
        for method in ("post", "put", "patch", "delete"):
            response = getattr(client, method)(url, {"input": "x", "title": "x"} if method == "post" else None)
            where = f"{method.upper()} {url} ({route.name})"
            assert response.status_code == 403, f"{where} without CSRF token: {response.status_code}"
        checked += 1
    assert checked >= 20
    assert Run.objects.count() == runs_before
    assert Session.objects.get(pk=session.pk).title == "mine"

    page = client.get(reverse("conversations:session_list"))
    token = page.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(reverse("conversations:session_new"), {"title": "with token"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 302
    assert Session.objects.filter(owner=user, title="with token").exists()


@pytest.mark.django_db
def test_api_session_auth_needs_csrf_but_bearer_tokens_do_not(user):
    """The API with the browser session: every unsafe call without a CSRF token is 403. With a
    Bearer token (no cookies, so no CSRF risk) the same call works."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    session = SessionFactory(owner=user)
    run = RunFactory(session=session)
    calls = [
        ("post", "/api/sessions", {"title": "x"}),
        ("delete", f"/api/sessions/{session.pk}", None),
        ("post", f"/api/sessions/{session.pk}/runs", {"input": "x"}),
        ("post", f"/api/sessions/{session.pk}/active", {"run_id": str(run.pk)}),
        ("post", f"/api/runs/{run.pk}/cancel", None),
        ("post", f"/api/runs/{run.pk}/fork", None),
        ("post", f"/api/runs/{run.pk}/regenerate", None),
        ("post", f"/api/runs/{run.pk}/edit", {"input": "y"}),
    ]
    for method, url, data in calls:
        response = getattr(client, method)(url, data=data, content_type="application/json")
        assert response.status_code == 403, f"{method.upper()} {url}: {response.status_code}"
    assert Session.objects.filter(owner=user).count() == 1 and Run.objects.count() == 1
    assert client.get(f"/api/sessions/{session.pk}").status_code == 200  # safe methods need no token

    token = ApiToken.issue(user=user)[1]
    bearer = Client(enforce_csrf_checks=True)
    response = bearer.post("/api/sessions", data={"title": "x"}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 201


# --- Content-Security-Policy ----------------------------------------------------------------------

SCRIPT_TAG = re.compile(rb"<script\b[^>]*>", re.I)
STYLE_TAG = re.compile(rb"<style\b[^>]*>", re.I)
EVENT_ATTR = re.compile(rb"<[a-z][^>]*\son[a-z]+\s*=", re.I)


def _csp_pages(user_session, run, comparison_ok=True) -> list[str]:
    pages = [
        reverse("conversations:session_list"),
        reverse("conversations:session_detail", args=[user_session.pk]),
        reverse("conversations:session_tree", args=[user_session.pk]),
        reverse("admin:index"),
        reverse("admin:conversations_session_changelist"),
        reverse("admin:conversations_session_change", args=[user_session.pk]),
        reverse("admin:conversations_run_change", args=[run.pk]),
        reverse("admin:audit_auditlog_changelist"),
        reverse("audit:run", args=[run.pk]),
    ]
    with contextlib.suppress(Exception):  # the comparisons app may not have pages yet
        pages.append(reverse("comparisons:index"))
    return pages


@pytest.mark.django_db
def test_pages_send_csp_with_a_nonce_and_every_script_carries_it(client, superuser):
    """Every page sends Content-Security-Policy with a fresh nonce in script-src; every <script>
    and <style> tag carries that nonce, and no element has an inline event handler."""
    session = SessionFactory(owner=superuser, title="csp")
    run = RunFactory(session=session)
    anonymous = Client()
    response = anonymous.get(reverse("login"))
    pages = [(response, reverse("login"))]
    client.force_login(superuser)
    pages += [(client.get(url), url) for url in _csp_pages(session, run)]
    nonces = set()
    for response, url in pages:
        assert response.status_code == 200, url
        header = response.get("Content-Security-Policy", "")
        match = re.search(r"script-src [^;]*'nonce-([^']+)'", header)
        assert match, f"{url}: no nonce in CSP header {header!r}"
        assert "'unsafe-inline'" not in header and "'unsafe-eval'" not in header
        assert "object-src 'none'" in header and "frame-ancestors 'none'" in header
        nonce = match.group(1).encode()
        nonces.add(nonce)
        scripts = SCRIPT_TAG.findall(response.content)
        assert scripts, url
        for tag in scripts + STYLE_TAG.findall(response.content):
            assert b'nonce="' + nonce + b'"' in tag, f"{url}: tag without the nonce: {tag!r}"
        assert not EVENT_ATTR.search(response.content), f"{url}: inline event handler"
    assert len(nonces) == len(pages)  # a new nonce for every response


@pytest.mark.django_db
def test_nul_characters_in_input_are_a_clear_400(client, user):
    """A NUL character (PostgreSQL text cannot hold one) is refused with 400, not a server error."""
    session = SessionFactory(owner=user)
    client.force_login(user)
    response = client.post(f"/api/sessions/{session.pk}/runs", data={"input": "a\x00b"},
                           content_type="application/json")
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    assert not Run.objects.filter(session=session).exists()
