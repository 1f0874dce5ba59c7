"""The JSON API of memory search: query, mode, filters and top_k, hits linking to their branches;
401 without credentials, 404 for another user's session or run, 400 for bad parameters (nothing
indexed), 503 when the mode cannot run; the search page reads the same parameters."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations.models import Message
from memory.stores.models import MessageEmbedding
from tests.memory.stores.test_semantic import conversations_of, endpoint_embeddings  # noqa: F401 - a fixture
from tests.support.factories import SessionFactory

pytestmark = pytest.mark.django_db


def test_semantic_search_with_links_to_the_branch(api, user, endpoint_embeddings):  # noqa: F811
    _, servers, (_, r2, r3) = conversations_of(user)
    response = api.get("/api/search", {"q": "gunicorn error log", "top_k": 3})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["mode"] == "semantic" and body["top_k"] == 3 and len(body["hits"]) == 3
    best = body["hits"][0]
    assert best["content"] == "Then read gunicorn's error log." and best["run_id"] == str(r3.pk)
    assert best["session_id"] == str(servers.pk) and best["session_title"] == "Servers" and best["role"] == "assistant"
    assert best["url"] == f"http://testserver/memory/branch/{r3.pk}/#m-{best['message_id']}"
    assert best["branch"] == f"http://testserver/api/branches/{r3.pk}"
    assert [h["score"] for h in body["hits"]] == sorted((h["score"] for h in body["hits"]), reverse=True)

    branch = api.get(best["branch"].removeprefix("http://testserver")).json()
    assert branch["run_id"] == str(r3.pk) and branch["session_id"] == str(servers.pk)
    assert [m["content"] for m in branch["messages"]] == [
        "nginx returns 502 bad gateway", "Check that the upstream socket is up.",
        "and the upstream is gunicorn", "Then read gunicorn's error log."]
    assert best["message_id"] in [m["message_id"] for m in branch["messages"]]
    assert {m["run_id"] for m in branch["messages"]} == {str(r2.pk), str(r3.pk)}


def test_keyword_search(api, user):
    conversations_of(user)
    body = api.get("/api/search", {"q": "gunicorn", "mode": "keyword"}).json()
    assert body["mode"] == "keyword"
    assert {h["content"] for h in body["hits"]} == {"and the upstream is gunicorn", "Then read gunicorn's error log."}


def test_filters_narrow_the_hits(api, user, endpoint_embeddings):  # noqa: F811
    """role, session_id, since and until narrow both modes; semantic search still fills top_k
    from the messages the filters allow."""
    cooking, servers, _ = conversations_of(user)
    users = api.get("/api/search", {"q": "gunicorn error log", "top_k": 10, "role": "user"}).json()
    assert len(users["hits"]) == 3 and {h["role"] for h in users["hits"]} == {"user"}
    assert users["filters"] == {"session_id": None, "role": "user", "since": None, "until": None}
    in_cooking = api.get("/api/search", {"q": "gunicorn error log", "top_k": 5, "session_id": str(cooking.pk)}).json()
    assert {h["session_id"] for h in in_cooking["hits"]} == {str(cooking.pk)} and len(in_cooking["hits"]) == 2
    keyword = api.get("/api/search", {"q": "gunicorn", "mode": "keyword", "role": "user"}).json()
    assert [h["content"] for h in keyword["hits"]] == ["and the upstream is gunicorn"]
    today = timezone.localdate()
    tomorrow = (today + timedelta(days=1)).isoformat()
    for mode in ("semantic", "keyword"):
        assert api.get("/api/search", {"q": "gunicorn", "mode": mode, "since": tomorrow}).json()["hits"] == []
        found = api.get("/api/search", {"q": "gunicorn", "mode": mode, "until": today.isoformat()}).json()["hits"]
        assert found, mode
    Message.objects.filter(run__session=servers).update(created_at=timezone.now() - timedelta(days=10))
    recent = api.get("/api/search", {"q": "gunicorn", "mode": "keyword",
                                     "since": (today - timedelta(days=2)).isoformat()}).json()
    assert recent["hits"] == []


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"q": "x", "mode": "psychic"}, "mode"),
        ({"q": "x", "top_k": 0}, "top_k"),
        ({"q": "x", "top_k": 101}, "top_k"),
        ({"q": "x", "top_k": "many"}, "top_k"),
        ({"q": "   "}, "q is empty"),
        ({}, "q"),
        ({"q": "x" * 1001}, "q: String should have at most 1000 characters"),
        ({"q": "a\x00b"}, "control character"),
        ({"q": "x", "since": "last week"}, "since: must be a date (YYYY-MM-DD)"),
        ({"q": "x", "until": "2024-13-01"}, "until must be a date"),
        ({"q": "x", "role": "system"}, "role"),
        ({"q": "x", "session_id": "nope"}, "session_id"),
    ],
)
def test_bad_parameters_are_400_and_index_nothing(api, user, endpoint_embeddings, params, fragment):  # noqa: F811
    conversations_of(user)
    response = api.get("/api/search", params)
    assert response.status_code == 400 and fragment in response.json()["detail"], response.content
    assert MessageEmbedding.objects.count() == 0


def test_an_unavailable_mode_is_503_saying_why(api, user, settings):
    conversations_of(user)
    settings.ARBOR_EMBEDDINGS = "off"
    response = api.get("/api/search", {"q": "x"})
    assert response.status_code == 503 and "Semantic search is off" in response.json()["detail"]


def test_other_users_sessions_and_runs_are_404_and_their_messages_never_appear(
        client, user, other_user, endpoint_embeddings):  # noqa: F811
    theirs, _, (_, _, their_run) = conversations_of(other_user)
    mine = SessionFactory(owner=user)
    client.force_login(user)
    for params in ({"q": "bread", "session_id": str(theirs.pk)}, {"q": "bread", "session_id": str(uuid.uuid4())}):
        response = client.get("/api/search", params)
        assert response.status_code == 404 and response.json()["detail"]
    assert client.get("/api/search", {"q": "sourdough bread"}).json()["hits"] == []
    assert client.get("/api/search", {"q": "bread", "session_id": str(mine.pk)}).json()["hits"] == []
    for url in (f"/api/branches/{their_run.pk}", f"/api/branches/{uuid.uuid4()}", "/api/branches/nope"):
        response = client.get(url)
        assert response.status_code == 404 and response.json()["detail"], url


def test_anonymous_callers_get_401(client, user):
    run = conversations_of(user)[2][0]
    for url in ("/api/search?q=bread", f"/api/branches/{run.pk}"):
        response = client.get(url)
        assert response.status_code == 401 and response.json()["detail"]


def test_the_page_reads_the_same_filters(client, user):
    conversations_of(user)
    client.force_login(user)
    page = client.get(reverse("memory:search"), {"q": "gunicorn", "mode": "keyword", "role": "user"})
    html = page.content.decode()
    assert page.status_code == 200 and "and the upstream is gunicorn" in html
    assert "Then read gunicorn" not in html
    bad = client.get(reverse("memory:search"), {"q": "gunicorn", "since": "soon"})
    assert bad.status_code == 400 and "since must be a date" in bad.content.decode()


def test_the_schema_lists_the_search_operations(api):
    paths = api.get("/api/openapi.json").json()["paths"]
    assert set(paths["/api/search"]) == {"get"} and set(paths["/api/branches/{run_id}"]) == {"get"}
    names = {p["name"] for p in paths["/api/search"]["get"]["parameters"]}
    assert names == {"q", "mode", "top_k", "session_id", "role", "since", "until"}


def test_keyword_search_is_served_by_the_full_text_index(user):
    """The keyword search matches with ``@@`` on the indexed expression, so on a user's 3,000
    messages PostgreSQL finds a rare word through the GIN index ``message_content_fts`` (a filter on
    ``ts_rank`` alone computed the rank of every message: a sequential scan)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from search.selectors import keyword_search
    from tests.support.factories import build_chain

    if connection.vendor != "postgresql":
        pytest.skip("full-text search is PostgreSQL's")
    build_chain(SessionFactory(owner=user), 1500)
    conversations_of(user)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    with CaptureQueriesContext(connection) as queries:
        hits = keyword_search(user=user, query="gunicorn", top_k=5)
    assert {h.content for h in hits} == {"and the upstream is gunicorn", "Then read gunicorn's error log."}
    (sql,) = [q["sql"] for q in queries if "ts_rank" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_content_fts" in plan, plan
