"""The API's schema states what the server requires of the fields people type (so a client, or
schemathesis, builds requests the server accepts): non-empty ``input``, ``q`` and names within
their lengths, days as ``format: date`` with their pattern, a non-empty upload; and the server
refuses what the schema refuses, with a 400 naming the field."""

from __future__ import annotations

import pytest

from config.api import api as ninja_api
from tests.support.factories import SessionFactory

pytestmark = pytest.mark.django_db


def _schema() -> dict:
    return ninja_api.get_openapi_schema()


def _body(schema: dict, name: str) -> dict:
    return schema["components"]["schemas"][name]["properties"]


def _query(schema: dict, path: str, name: str) -> dict:
    return next(p["schema"] for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name)


def test_the_schema_states_lengths_and_formats():
    schema = _schema()
    for model, field, longest in (("RunIn", "input", 32_000), ("EditIn", "input", 32_000), ("AgentIn", "name", 100),
                                  ("ConnectionIn", "name", 100), ("LabelIn", "name", 60),
                                  ("LabelRenameIn", "name", 60)):
        assert (_body(schema, model)[field]["minLength"], _body(schema, model)[field]["maxLength"]) == (1, longest)
    for model in ("AgentPatch", "ConnectionPatch"):
        assert _body(schema, model)["name"]["anyOf"][0]["minLength"] == 1
    assert _query(schema, "/api/search", "q")["minLength"] == 1
    for path in ("/api/search", "/api/comparisons/results", "/api/comparisons/results.csv"):
        for name in ("since", "until"):
            day = _query(schema, path, name)
            assert day["type"] == "string" and day["format"] == "date" and day["pattern"]
    upload = schema["paths"]["/api/imports"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["properties"]["file"] == {"format": "binary", "title": "File", "type": "string", "minLength": 1}


@pytest.mark.parametrize(("method", "path", "payload", "field"), [
    ("get", "/api/search?q=", None, "q"),
    ("get", "/api/search?q=porto&since=", None, "since"),
    ("get", "/api/search?q=porto&until=5%20May", None, "until"),
    ("get", "/api/comparisons/results?since=2024-1-1", None, "since"),
    ("post", "/api/agents", {"name": ""}, "name"),
    ("post", "/api/connections", {"name": "", "base_url": "http://127.0.0.1:9/v1"}, "name"),
    ("post", "/api/sessions/{session}/runs", {"input": ""}, "input"),
])
def test_what_the_schema_refuses_is_a_400_naming_the_field(api, user, method, path, payload, field):
    session = SessionFactory(owner=user)
    url = path.format(session=session.pk)
    response = (api.get(url) if method == "get" else api.post(url, data=payload, content_type="application/json"))
    assert response.status_code == 400, response.content
    assert field in response.json()["detail"]
