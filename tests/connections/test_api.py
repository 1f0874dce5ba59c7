"""The JSON API of connections and agents: every endpoint's success, 401 without credentials, 404
for another user's objects (nothing changed), 4xx JSON with a detail for bad input (nothing
written), 403 for shared objects without being an administrator; the OpenAPI schema lists them."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import ApiToken
from connections.models import Connection, ConnectionModel
from memory.models import Agent
from tests.support.factories import AgentFactory, ConnectionFactory

from .conftest import KEY_A, KEY_B

pytestmark = pytest.mark.django_db

ENDPOINTS = [  # (method, path, body) with {c}: a connection id, {m}: one of its models, {a}: an agent id
    ("get", "/api/connections", None),
    ("post", "/api/connections", {"name": "n", "base_url": "http://127.0.0.1:9/v1"}),
    ("get", "/api/connections/{c}", None),
    ("patch", "/api/connections/{c}", {"name": "renamed"}),
    ("delete", "/api/connections/{c}", None),
    ("post", "/api/connections/{c}/refresh", None),
    ("post", "/api/connections/{c}/health", None),
    ("post", "/api/connections/{c}/models", {"name": "hand-made"}),
    ("patch", "/api/connections/{c}/models/{m}", {"context_window": 4096}),
    ("delete", "/api/connections/{c}/models/{m}", None),
    ("get", "/api/agents", None),
    ("post", "/api/agents", {"name": "agent"}),
    ("get", "/api/agents/{a}", None),
    ("patch", "/api/agents/{a}", {"model": "fake-model"}),
    ("delete", "/api/agents/{a}", None),
]


def call(client: Client, method: str, path: str, body=None, **extra):
    if body is None:
        return getattr(client, method)(path, **extra)
    return getattr(client, method)(path, data=body, content_type="application/json", **extra)


@pytest.fixture
def theirs(other_user, second_server):
    """Another user's connection (with a model) and agent on it."""
    connection = ConnectionFactory(owner=other_user, name="Theirs", base_url=second_server.base_url,
                                   api_key=KEY_B)
    model = ConnectionModel.objects.create(connection=connection, name="their-model")
    agent = AgentFactory(owner=other_user, name="their agent", connection=connection, model="their-model")
    return {"c": connection.pk, "m": model.pk, "a": agent.pk}


def _snapshot() -> tuple:
    """Every row an endpoint could write (the default connection's row is made on first use: left out)."""
    mine = Connection.objects.filter(from_environment=False)
    return (sorted(mine.values_list("pk", "name", "base_url", "enabled", "deleted_at", "timeout")),
            sorted(ConnectionModel.objects.values_list("pk", "name", "context_window", "prompt_price")),
            sorted(Agent.objects.values_list("pk", "name", "model", "connection_id", "memory_id", "params")),
            [c.api_key for c in Connection.objects.filter(from_environment=False).order_by("pk")])


def test_every_endpoint_answers_401_without_credentials(theirs):
    anonymous = Client()
    before = _snapshot()
    for method, path, body in ENDPOINTS:
        response = call(anonymous, method, path.format(**theirs), body)
        assert response.status_code == 401, f"{method} {path}: {response.status_code}"
        assert "Authentication required" in response.json()["detail"]
    assert _snapshot() == before


def test_another_users_connections_models_and_agents_are_404_and_unchanged(client, user, theirs):
    """With a Bearer token and with the session: 404 everywhere an id is another user's; lists never show them."""
    token = ApiToken.issue(user=user)[1]
    client.force_login(user)
    before = _snapshot()
    for auth in ({}, {"HTTP_AUTHORIZATION": f"Bearer {token}"}):
        for method, path, body in ENDPOINTS:
            if "{" not in path:
                continue
            response = call(client, method, path.format(**theirs), body, **auth)
            assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.content[:200]}"
            assert response.json()["detail"]
    assert _snapshot() == before
    listed = client.get("/api/connections").json()["items"]
    assert "Theirs" not in {c["name"] for c in listed}
    assert "their agent" not in {a["name"] for a in client.get("/api/agents").json()["items"]}
    # An agent on another user's connection, or a run started with it: 404, nothing written.
    assert call(client, "post", "/api/agents", {"name": "sneaky", "connection_id": theirs["c"]}).status_code == 404
    session = client.post("/api/sessions", {}, content_type="application/json").json()["id"]
    for body in ({"input": "hi", "connection_id": theirs["c"]}, {"input": "hi", "agent_id": theirs["a"]}):
        assert call(client, "post", f"/api/sessions/{session}/runs", body).status_code == 404
    assert _snapshot() == before
    assert client.get(f"/api/sessions/{session}/tree").json()["runs"] == []


def test_connection_endpoints_succeed(client, user, llm_server, second_server):
    client.force_login(user)
    response = call(client, "post", "/api/connections", {
        "name": "B", "base_url": second_server.base_url, "api_key": KEY_B, "extra_headers": {"X-Team": "bee"},
        "timeout": 30})
    assert response.status_code == 201, response.content
    made = response.json()
    assert made["warning"] == "" and made["has_key"] is True and made["extra_header_names"] == ["X-Team"]
    assert made["health"]["status"] == "ok" and made["health"]["latency_ms"] is not None
    by_name = {m["name"]: m for m in made["models"]}
    assert set(by_name) == {"model-b", "big-b"}
    assert by_name["big-b"]["context_window"] == 32768 and by_name["big-b"]["context_window_source"] == (
        "listed by the endpoint")
    assert second_server.state.model_list_auth == [f"Bearer {KEY_B}"]  # the key went to the endpoint, not to us
    cid = made["id"]

    listed = client.get("/api/connections").json()
    assert [c["name"] for c in listed["items"]][0] == "Default"  # the default connection comes first
    assert {"B"} <= {c["name"] for c in listed["items"]} and listed["count"] >= 2
    assert client.get(f"/api/connections/{cid}").json()["timeout"] == 30

    changed = call(client, "patch", f"/api/connections/{cid}", {"name": "B2", "timeout": None, "enabled": False})
    assert changed.status_code == 200 and changed.json()["name"] == "B2" and changed.json()["timeout"] is None
    assert changed.json()["enabled"] is False and changed.json()["warning"] == ""
    assert Connection.objects.get(pk=cid).api_key == KEY_B  # an update without api_key keeps it
    assert call(client, "patch", f"/api/connections/{cid}", {"api_key": ""}).json()["has_key"] is False

    health = client.post(f"/api/connections/{cid}/health")
    assert health.status_code == 200 and health.json()["reachable"] is True
    refreshed = client.post(f"/api/connections/{cid}/refresh")
    assert refreshed.status_code == 200 and {m["name"] for m in refreshed.json()["models"]} == {"model-b", "big-b"}

    added = call(client, "post", f"/api/connections/{cid}/models", {"name": "by-hand", "context_window": 2048,
                                                                     "prompt_price": 1.5, "completion_price": 2})
    assert added.status_code == 201, added.content
    mid = added.json()["id"]
    assert added.json()["added_by_hand"] is True and added.json()["context_window"] == 2048
    patched = call(client, "patch", f"/api/connections/{cid}/models/{mid}", {"context_window": None,
                                                                               "prompt_price": 3})
    assert patched.status_code == 200
    assert patched.json()["context_window_source"] == "settings" and patched.json()["prompt_price"] == 3
    assert patched.json()["completion_price"] == 2
    assert client.delete(f"/api/connections/{cid}/models/{mid}").status_code == 204
    assert not ConnectionModel.objects.filter(pk=mid).exists()

    assert client.delete(f"/api/connections/{cid}").status_code == 204
    assert Connection.objects.get(pk=cid).deleted_at is not None  # kept, so agents on it fail with its name
    assert client.get(f"/api/connections/{cid}").status_code == 404
    default = Connection.objects.get(from_environment=True)
    assert client.delete(f"/api/connections/{default.pk}").status_code == 403  # shared: administrators only


def test_an_unreachable_connection_is_saved_with_a_warning(client, user):
    client.force_login(user)
    response = call(client, "post", "/api/connections", {"name": "Nowhere", "base_url": "http://127.0.0.1:9/v1"})
    assert response.status_code == 201
    body = response.json()
    assert body["health"]["status"] == "unreachable" and body["health"]["reachable"] is False
    assert "Could not reach http://127.0.0.1:9/v1" in body["warning"] and body["models"] == []
    assert Connection.objects.filter(name="Nowhere", owner=user).exists()


BAD_CONNECTIONS = [
    ({"name": "", "base_url": "http://h/v1"}, "name"),
    ({"name": "x", "base_url": "ftp://h/v1"}, "base_url"),
    ({"name": "x", "base_url": "not a url"}, "base_url"),
    ({"name": "x", "base_url": "http://h/v1", "timeout": 0}, "timeout"),
    ({"name": "x", "base_url": "http://h/v1", "timeout": "soon"}, "timeout"),
    ({"name": "x", "base_url": "http://h/v1", "extra_headers": {"Bad Header": "v"}}, "header"),
    ({"name": "x", "base_url": "http://h/v1", "extra_headers": {"Host": "evil"}}, "Host"),
    ({"name": "x", "base_url": "http://h/v1", "extra_headers": {"X-A": "line\nbreak"}}, "X-A"),
    ({"name": "x", "base_url": "http://h/v1", "api_key": "k\x00"}, "api_key"),
    ({"name": "x" * 101, "base_url": "http://h/v1"}, "name"),
    ({"base_url": "http://h/v1"}, "name"),
]


def test_bad_connection_input_is_400_with_a_detail_and_writes_nothing(client, user, conn_a):
    client.force_login(user)
    before = _snapshot()
    for body, word in BAD_CONNECTIONS:
        response = call(client, "post", "/api/connections", body)
        assert response.status_code == 400, (body, response.content)
        assert word in response.json()["detail"], (body, response.json())
    taken = call(client, "post", "/api/connections", {"name": "server a", "base_url": "http://h/v1"})
    assert taken.status_code == 400 and "already have a connection with this name" in taken.json()["detail"]
    for body, _ in BAD_CONNECTIONS[1:9]:
        patch = {k: v for k, v in body.items() if k != "name"}
        response = call(client, "patch", f"/api/connections/{conn_a.pk}", patch)
        assert response.status_code == 400, (patch, response.content)
    assert call(client, "patch", f"/api/connections/{conn_a.pk}", {"shared": True}).status_code == 403
    assert call(client, "post", "/api/connections", {"name": "s", "base_url": "http://h/v1",
                                                     "shared": True}).status_code == 403
    for body in ({"name": ""}, {"name": "m", "context_window": 0}, {"name": "m", "prompt_price": -1},
                 {"name": "m", "completion_price": "free"}):
        response = call(client, "post", f"/api/connections/{conn_a.pk}/models", body)
        assert response.status_code == 400 and response.json()["detail"], (body, response.content)
    model = ConnectionModel.objects.create(connection=conn_a, name="fake-model")
    before = _snapshot()
    for body in ({"context_window": -5}, {"prompt_price": "NaN"}, {"context_window": "big"}):
        response = call(client, "patch", f"/api/connections/{conn_a.pk}/models/{model.pk}", body)
        assert response.status_code == 400, (body, response.content)
    assert call(client, "post", f"/api/connections/{conn_a.pk}/models", {"name": "fake-model"}).status_code == 409
    for raw in (b"[1, 2]", b"{not json"):
        response = client.post("/api/connections", raw, content_type="application/json")
        assert response.status_code == 400 and response.json()["detail"]
    assert _snapshot() == before
    assert Connection.objects.get(pk=conn_a.pk).api_key == KEY_A


def test_shared_connections_are_for_administrators(client, user, superuser, llm_server):
    client.force_login(superuser)
    shared = call(client, "post", "/api/connections", {"name": "Team", "base_url": llm_server.base_url,
                                                       "shared": True})
    assert shared.status_code == 201 and shared.json()["shared"] is True and shared.json()["manageable"] is True
    sid = shared.json()["id"]
    client.force_login(user)
    seen = client.get(f"/api/connections/{sid}")
    assert seen.status_code == 200 and seen.json()["manageable"] is False
    before = _snapshot()
    for method, path, body in (("patch", f"/api/connections/{sid}", {"name": "mine now"}),
                               ("delete", f"/api/connections/{sid}", None),
                               ("post", f"/api/connections/{sid}/refresh", None),
                               ("post", f"/api/connections/{sid}/models", {"name": "x"})):
        response = call(client, method, path, body)
        assert response.status_code == 403 and "administrator" in response.json()["detail"], path
    assert _snapshot() == before
    assert client.post(f"/api/connections/{sid}/health").status_code == 200  # anyone who may use it may check it
    default = client.get("/api/connections").json()["items"][0]
    assert default["default"] is True and default["base_url"] == llm_server.base_url
    client.force_login(superuser)
    response = call(client, "patch", f"/api/connections/{default['id']}", {"base_url": "http://elsewhere/v1"})
    assert response.status_code == 400 and "OPENAI_BASE_URL" in response.json()["detail"]
    assert client.delete(f"/api/connections/{default['id']}").status_code == 409


def test_agent_endpoints_succeed(client, user, conn_b):
    client.force_login(user)
    ConnectionModel.objects.create(connection=conn_b, name="model-b")
    body = {
        "name": "Bee", "connection_id": conn_b.pk, "model": "model-b", "system_prompt": "Be brief.",
        "params": {"temperature": 0.2}, "memory_id": "bee", "memory_window_size": 6, "context_window": 4096,
        "reserved_output_tokens": 256, "tools": ["calculator"],
        "compaction": {"threshold": 0.7, "strategies": [{"type": "summarize", "keep_recent_turns": 2}]},
    }
    response = call(client, "post", "/api/agents", body)
    assert response.status_code == 201, response.content
    made = response.json()
    assert made["connection"] == {"id": conn_b.pk, "name": "Server B"} and made["model_label"] == "Server B · model-b"
    assert made["memory_window_size"] == 6 and made["tools"] == ["calculator"] and made["shared"] is False
    aid = made["id"]
    assert aid in {a["id"] for a in client.get("/api/agents").json()["items"]}
    assert client.get(f"/api/agents/{aid}").json()["compaction"]["threshold"] == 0.7
    changed = call(client, "patch", f"/api/agents/{aid}", {"connection_id": None, "model": "fake-model",
                                                           "memory_window_size": None})
    assert changed.status_code == 200, changed.content
    assert changed.json()["connection"] is None and changed.json()["model_label"] == "Default · fake-model"
    assert changed.json()["memory_window_size"] is None and changed.json()["system_prompt"] == "Be brief."
    assert client.delete(f"/api/agents/{aid}").status_code == 204
    assert not Agent.objects.filter(pk=aid).exists()


BAD_AGENTS = [
    ({"name": ""}, "name"),
    ({"name": "a", "compaction": {"threshold": 2}}, "compaction"),
    ({"name": "a", "compaction": {"strategies": [{"type": "forget"}]}}, "compaction"),
    ({"name": "a", "compaction": {"strategies": [{"type": "summarize", "connection": "No Such"}]}}, "No Such"),
    ({"name": "a", "params": {"temperature": 9}}, "temperature"),
    ({"name": "a", "params": {"bogus": 1}}, "params"),
    ({"name": "a", "tools": ["calculator", "calculator"]}, "tools"),
    ({"name": "a", "tools": ["not a name!"]}, "tools"),
    ({"name": "a", "memory_window_size": -1}, "memory_window_size"),
    ({"name": "a", "memory_id": ""}, "memory_id"),
    ({"name": "a", "model": "not-listed"}, "model"),
    ({"name": "Existing"}, "already exists"),
]


def test_bad_agent_input_is_400_naming_the_field_and_writes_nothing(client, user, conn_b):
    client.force_login(user)
    ConnectionModel.objects.create(connection=conn_b, name="model-b")
    existing = AgentFactory(owner=user, name="Existing")
    before = _snapshot()
    for body, word in BAD_AGENTS:
        payload = {**body, "connection_id": conn_b.pk} if body.get("model") else body
        response = call(client, "post", "/api/agents", payload)
        assert response.status_code == 400, (body, response.content)
        assert word in response.json()["detail"], (body, response.json()["detail"])
    for body, word in BAD_AGENTS[1:11]:
        patch = {k: v for k, v in body.items() if k != "name"}
        if "model" in patch:
            patch["connection_id"] = conn_b.pk
        response = call(client, "patch", f"/api/agents/{existing.pk}", patch)
        assert response.status_code == 400 and word in response.json()["detail"], (patch, response.content)
    assert call(client, "post", "/api/agents", {"name": "s", "shared": True}).status_code == 403
    conn_b.deleted_at = conn_b.created_at
    conn_b.save(update_fields=["deleted_at"])
    assert call(client, "post", "/api/agents", {"name": "gone", "connection_id": conn_b.pk}).status_code == 404
    assert sorted(Agent.objects.values_list("pk", "name", "model", "connection_id", "memory_id", "params")) == before[2]


def test_openapi_lists_every_new_operation_with_its_statuses(client, user):
    client.force_login(user)
    schema = client.get("/api/openapi.json").json()
    paths = schema["paths"]
    expected = {
        "/api/connections": {"get": {"200", "401"}, "post": {"201", "400", "401", "403", "413"}},
        "/api/connections/{connection_id}": {"get": {"200", "404"}, "patch": {"200", "400", "403", "404"},
                                             "delete": {"204", "403", "404", "409"}},
        "/api/connections/{connection_id}/refresh": {"post": {"200", "403", "404"}},
        "/api/connections/{connection_id}/health": {"post": {"200", "404"}},
        "/api/connections/{connection_id}/models": {"post": {"201", "400", "403", "404", "409"}},
        "/api/connections/{connection_id}/models/{model_id}": {"patch": {"200", "400", "403", "404"},
                                                               "delete": {"204", "403", "404"}},
        "/api/agents": {"get": {"200", "401"}, "post": {"201", "400", "401", "403", "404"}},
        "/api/agents/{agent_id}": {"get": {"200", "404"}, "patch": {"200", "400", "403", "404"},
                                   "delete": {"204", "403", "404"}},
    }
    for path, operations in expected.items():
        assert path in paths, path
        for method, statuses in operations.items():
            assert statuses <= set(paths[path][method]["responses"]), (path, method, paths[path][method]["responses"])
    detail = schema["components"]["schemas"]["Detail"]
    assert detail["properties"]["detail"]["type"] == "string"
    assert "agent_id" in schema["components"]["schemas"]["RunIn"]["properties"]
    assert "api_key" not in schema["components"]["schemas"]["ConnectionOut"]["properties"]


def test_malformed_and_out_of_range_ids_are_404(client, user):
    client.force_login(user)
    for path in ("/api/connections/abc", "/api/connections/0", f"/api/connections/{2**70}", "/api/agents/-3",
                 f"/api/agents/{2**64}", f"/api/connections/{2**70}/models/1"):
        response = client.get(path) if "models" not in path else client.delete(path)
        assert response.status_code == 404 and response.json()["detail"], path
    assert client.get(f"/connections/{2**70}/").status_code == 404  # the page, too


def test_the_admin_validates_an_agents_connection_and_model_as_the_api_does(client, superuser, user, other_user,
                                                                            conn_b):
    """The agent admin's form runs Agent.clean too: another user's connection, a model the
    connection does not list and an unknown summariser connection are refused; a valid one saves."""
    ConnectionModel.objects.create(connection=conn_b, name="model-b")
    theirs = ConnectionFactory(owner=other_user, name="Theirs", base_url="http://h/v1")
    client.force_login(superuser)
    form = {"owner": user.pk, "name": "via admin", "memory_id": "default", "reserved_output_tokens": 512,
            "params": "{}", "compaction": "{}", "tools": "[]", "created_at_0": "2026-01-01", "created_at_1": "00:00:00"}
    url = "/admin/memory/agent/add/"
    for changes, message in (({"connection": theirs.pk}, "belongs to another user"),
                             ({"connection": conn_b.pk, "model": "nope"}, "is not a model of the connection"),
                             ({"compaction": '{"strategies": [{"type": "summarize", "connection": "Nope"}]}'},
                              "is not a connection this agent may use")):
        response = client.post(url, {**form, **changes})
        assert response.status_code == 200 and message in response.content.decode(), changes
    assert not Agent.objects.filter(name="via admin").exists()
    response = client.post(url, {**form, "connection": conn_b.pk, "model": "model-b"})
    assert response.status_code == 302
    assert Agent.objects.get(name="via admin").connection_id == conn_b.pk
