"""The JSON API of comparisons: start (new prompt, replay, blind, existing agents), the side-by-side
state with per-cell metrics, votes, reveal, continuing a branch, results as JSON and CSV with the
page's filters; 401 without credentials, 404 for another user's objects, 4xx with nothing written."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest

from comparisons.models import Comparison, Variant, VariantRun, Vote
from conversations.models import Run, RunStatus, Session
from memory.models import Agent
from tests.comparisons.conftest import finish_run
from tests.support.factories import AgentFactory, RunFactory, SessionFactory, build_chain

pytestmark = pytest.mark.django_db

SECRETS = ["Zanzibar-Owl", "Quetzal-Moth", "mdl-quokka-9", "mdl-narwhal-3", "SYS-PELICAN", "SYS-WOMBAT"]


def post(client, url, data=None, **extra):
    return client.post(url, data=json.dumps(data) if data is not None else "", content_type="application/json",
                       **extra)


def secret_variants():
    return [{"label": "Zanzibar-Owl", "model": "mdl-quokka-9", "system_prompt": "SYS-PELICAN",
             "params": {"temperature": 0.3}},
            {"label": "Quetzal-Moth", "model": "mdl-narwhal-3", "system_prompt": "SYS-WOMBAT",
             "params": {"temperature": 1.3, "seed": 7}, "memory_window_size": 4}]


def start(api, runs, **fields):
    body = {"branch_point_run_id": str(runs[2].pk), "variants": secret_variants(), "prompt": "Tell me a fact",
            **fields}
    return post(api, "/api/comparisons", body)


def finish_all(comparison_id, text="a neutral answer", **metrics):
    for vr in VariantRun.objects.filter(variant__comparison_id=comparison_id).select_related("run"):
        if not vr.run.is_finished:
            finish_run(vr.run, text=text, **metrics)


def counts() -> tuple[int, ...]:
    return (Comparison.objects.count(), Variant.objects.count(), Run.objects.count(), Agent.objects.count(),
            Vote.objects.count())


# --- starting ---------------------------------------------------------------------------------------

def test_start_a_blind_comparison_and_read_its_state(api, user, chain):
    """201 with the state: one queued run per column, children of the branch point; nothing names a
    variant before the vote (not a label, model, system prompt, parameter or agent)."""
    session, runs = chain
    response = start(api, runs, tags=["Prompts", "ci"])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["blind"] is True and body["labels_visible"] is False and body["session_id"] == str(session.pk)
    assert body["branch_point_run_id"] == str(runs[2].pk) and body["mode"] == "new_prompt"
    assert sorted(body["tags"]) == ["ci", "prompts"]
    assert [c["letter"] for c in body["columns"]] == ["A", "B"] and all(c["variant"] is None for c in body["columns"])
    (turn,) = body["turns"]
    assert turn["prompt"] == "Tell me a fact" and turn["complete"] is False and turn["vote"] is None
    for cell in turn["cells"]:
        run = Run.objects.get(pk=cell["run_id"])
        assert run.parent_run_id == runs[2].pk and cell["active"] is True and cell["metrics"] is None
    text = json.dumps(body) + api.get(f"/api/comparisons/{body['id']}").content.decode()
    text += api.get("/api/comparisons").content.decode()
    assert not [s for s in SECRETS if s.lower() in text.lower()]
    assert " · compare " not in text


def test_start_with_existing_agents_and_a_replayed_branch(api, user, chain):
    """Variants may name agents (yours or shared ones); replay sends the branch's user turns in order."""
    session, runs = chain
    mine = AgentFactory(owner=user, name="Mine", model="model-mine", system_prompt="S1")
    shared = AgentFactory(owner=None, name="Shared", model="model-shared")
    body = {"branch_point_run_id": str(runs[1].pk), "mode": "replay", "source_run_id": str(runs[4].pk),
            "blind": False, "variants": [{"label": "mine", "agent_id": mine.pk},
                                         {"label": "shared", "agent_id": shared.pk}]}
    response = post(api, "/api/comparisons", body)
    assert response.status_code == 201, response.content
    state = response.json()
    assert [t["prompt"] for t in state["turns"]] == ["question 2", "question 3", "question 4"]
    assert [c["variant"]["agent_id"] for c in state["columns"]] == [mine.pk, shared.pk]
    assert [c["variant"]["model"] for c in state["columns"]] == ["model-mine", "model-shared"]
    first = [Run.objects.get(pk=c["run_id"]) for c in state["turns"][0]["cells"]]
    assert [r.model for r in first] == ["model-mine", "model-shared"]
    assert all(c["run_id"] is None for c in state["turns"][1]["cells"])  # later turns follow as runs finish
    assert Agent.objects.count() == 2  # no agent was made for these variants


def test_a_fork_compares_from_a_shared_ancestor(api, user, chain):
    session, runs = chain
    fork_id = post(api, f"/api/runs/{runs[3].pk}/fork").json()["session_id"]
    response = start(api, runs, session_id=fork_id, blind=False)
    assert response.status_code == 201, response.content
    assert response.json()["session_id"] == fork_id
    assert Comparison.objects.get().session_id == uuid.UUID(fork_id)


@pytest.mark.parametrize(
    ("change", "status", "fragment"),
    [
        ({"variants": secret_variants()[:1]}, 400, "variants"),
        ({"variants": secret_variants() * 3}, 400, "variants"),
        ({"variants": [{"label": "same"}, {"label": "SAME"}]}, 400, "different"),
        ({"variants": [{"label": "a"}, {"label": "  "}]}, 400, "label"),
        ({"variants": [{"label": "a", "params": {"temperature": 9}}, {"label": "b"}]}, 400, "temperature"),
        ({"variants": [{"label": "a", "params": {"logit_bias": 1}}, {"label": "b"}]}, 400, "unknown parameters"),
        ({"variants": [{"label": "a", "memory_window_size": -1}, {"label": "b"}]}, 400, "memory_window_size"),
        ({"variants": [{"label": "a", "model": "m" * 201}, {"label": "b"}]}, 400, "model"),
        ({"variants": [{"label": "a\x00"}, {"label": "b"}]}, 400, "label"),
        ({"variants": [{"label": "a", "agent_id": "x"}, {"label": "b"}]}, 400, "agent_id"),
        ({"prompt": "   "}, 400, "input is empty"),
        ({"prompt": None}, 400, "input is empty"),
        ({"mode": "sideways"}, 400, "mode"),
        ({"mode": "replay"}, 400, "branch"),
        ({"tags": ["x" * 51]}, 400, "tag"),
        ({"blind": "maybe"}, 400, "blind"),
        ({"branch_point_run_id": "not-a-uuid"}, 400, "branch_point_run_id"),
    ],
)
def test_bad_starts_answer_4xx_and_write_nothing(api, user, chain, change, status, fragment):
    _, runs = chain
    before = counts()
    response = start(api, runs, **change)
    assert response.status_code == status, response.content
    assert fragment in response.json()["detail"]
    assert counts() == before


def test_an_agent_with_a_configuration_is_refused(api, user, chain):
    _, runs = chain
    agent = AgentFactory(owner=user, name="Mine", model="m")
    before = counts()
    response = start(api, runs, variants=[{"label": "a", "agent_id": agent.pk, "model": "other"}, {"label": "b"}])
    assert response.status_code == 400 and "not both" in response.json()["detail"]
    assert counts() == before


def test_an_unfinished_branch_point_is_409(api, user, chain):
    session, runs = chain
    queued = RunFactory(session=session, parent_run=runs[4], status=RunStatus.QUEUED, turn=("hi", None))
    before = counts()
    response = post(api, "/api/comparisons", {"branch_point_run_id": str(queued.pk), "prompt": "p",
                                              "variants": [{"label": "a"}, {"label": "b"}]})
    assert response.status_code == 409 and "not finished" in response.json()["detail"]
    assert counts() == before


def test_malformed_json_is_a_400(api, user, chain):
    before = counts()
    response = api.post("/api/comparisons", data="{nope", content_type="application/json")
    assert response.status_code == 400 and response.json()["detail"]
    assert counts() == before


# --- state, votes, reveal ---------------------------------------------------------------------------

def test_cells_carry_metrics_and_the_vote_reveals_the_labels(api, user, chain, settings):
    """Finished cells have tokens, time to first token, latency; cost stays hidden while blind (it
    would tell the model) and shows after the vote, with labels and configurations."""
    settings.ARBOR_MODEL_PRICES = {"mdl-quokka-9": {"prompt": 1.0, "completion": 2.0}}
    _, runs = chain
    comparison_id = start(api, runs).json()["id"]
    finish_all(comparison_id, prompt_tokens=1000, completion_tokens=500, ttft=0.25, latency=1.5)
    state = api.get(f"/api/comparisons/{comparison_id}").json()
    (turn,) = state["turns"]
    assert turn["complete"] is True
    for cell in turn["cells"]:
        assert cell["status"] == "succeeded" and cell["answer"] == "a neutral answer" and cell["active"] is False
        assert cell["metrics"] == {"prompt_tokens": 1000, "completion_tokens": 500, "ttft": 0.25, "latency": 1.5,
                                   "cost": None}
    assert state["totals"][0]["prompt_tokens"] == 1000 and state["totals"][0]["turns"] == 1
    cell = api.get(f"/api/comparisons/{comparison_id}/turns/0/columns/1").json()
    assert cell == turn["cells"][1]

    response = post(api, f"/api/comparisons/{comparison_id}/turns/0/vote", {"choice": "a_better", "note": "crisper"})
    assert response.status_code == 201, response.content
    state = response.json()
    assert state["labels_visible"] is True and state["revealed_at"] and state["voting_finished"] is True
    left = state["columns"][0]["variant"]
    assert left["label"] in ("Zanzibar-Owl", "Quetzal-Moth") and left["config"]["system_prompt"].startswith("SYS-")
    vote = state["turns"][0]["vote"]
    assert vote["choice"] == "a_better" and vote["note"] == "crisper"
    assert vote["ranking"][0] == {"letter": "A", "rank": 1, "label": left["label"]}
    costs = {c["variant"]["model"]: cell["metrics"]["cost"]
             for c, cell in zip(state["columns"], state["turns"][0]["cells"], strict=True)}
    assert costs == {"mdl-quokka-9": pytest.approx(0.002), "mdl-narwhal-3": None}
    ranks = Vote.objects.get().ranks.select_related("variant")
    assert {r.variant.label: r.rank for r in ranks}[left["label"]] == 1


def test_a_ranking_of_three_columns(api, user, chain):
    _, runs = chain
    variants = [{"label": f"v{i}", "model": f"m{i}"} for i in range(3)]
    comparison_id = start(api, runs, variants=variants, blind=False).json()["id"]
    finish_all(comparison_id)
    url = f"/api/comparisons/{comparison_id}/turns/0/vote"
    for bad in ({"choice": "ranking", "ranking": [1, 2]}, {"choice": "ranking", "ranking": [1, 2, 9]},
                {"choice": "ranking"}, {"choice": "a_better"}, {"choice": "meh"},
                {"choice": "ranking", "ranking": [1, 2, 3], "note": "x" * 2001},
                {"choice": "ranking", "ranking": [1, 2, 3], "note": "a\x00b"}):
        response = post(api, url, bad)
        assert response.status_code == 400 and response.json()["detail"], bad
    assert Vote.objects.count() == 0
    response = post(api, url, {"choice": "ranking", "ranking": [2, 1, 2]})
    assert response.status_code == 201
    ranking = response.json()["turns"][0]["vote"]["ranking"]
    assert [(r["letter"], r["rank"], r["label"]) for r in ranking] == [("B", 1, "v1"), ("A", 2, "v0"), ("C", 2, "v2")]


def test_vote_conflicts_and_unknown_prompts(api, user, chain):
    _, runs = chain
    comparison_id = start(api, runs).json()["id"]
    url = f"/api/comparisons/{comparison_id}/turns/0/vote"
    response = post(api, url, {"choice": "tie"})
    assert response.status_code == 409 and "every variant has answered" in response.json()["detail"]
    finish_all(comparison_id)
    assert post(api, f"/api/comparisons/{comparison_id}/turns/1/vote", {"choice": "tie"}).status_code == 404
    assert post(api, f"/api/comparisons/{comparison_id}/turns/-1/vote", {"choice": "tie"}).status_code == 404
    assert post(api, url, {"choice": "tie"}).status_code == 201
    again = post(api, url, {"choice": "a_better"})
    assert again.status_code == 409 and "already has a vote" in again.json()["detail"]
    assert Vote.objects.get().choice == "tie"
    assert api.get(f"/api/comparisons/{comparison_id}/turns/0/columns/2").status_code == 404
    assert api.get(f"/api/comparisons/{comparison_id}/turns/5/columns/0").status_code == 404


def test_reveal_waits_for_the_votes_and_open_continues_a_branch(api, user, chain):
    session, runs = chain
    comparison_id = start(api, runs).json()["id"]
    response = post(api, f"/api/comparisons/{comparison_id}/reveal")
    assert response.status_code == 409 and "Vote on every prompt" in response.json()["detail"]
    active = Session.objects.get(pk=session.pk).active_run_id
    response = post(api, f"/api/comparisons/{comparison_id}/columns/0/open")
    assert response.status_code == 409 and "Vote first" in response.json()["detail"]
    assert Session.objects.get(pk=session.pk).active_run_id == active  # unchanged
    finish_all(comparison_id)
    post(api, f"/api/comparisons/{comparison_id}/turns/0/vote", {"choice": "b_better"})
    state = post(api, f"/api/comparisons/{comparison_id}/reveal").json()  # already revealed by the vote: no-op
    assert state["labels_visible"] is True
    response = post(api, f"/api/comparisons/{comparison_id}/columns/1/open")
    assert response.status_code == 200
    last = state["columns"][1]["last_run_id"]
    assert response.json() == {"session_id": str(session.pk), "active_run_id": last}
    assert str(Session.objects.get(pk=session.pk).active_run_id) == last
    assert post(api, f"/api/comparisons/{comparison_id}/columns/2/open").status_code == 404


def test_resume_starts_a_lost_replayed_turn(api, user, chain):
    """A replay whose next turn was never started (a lost task) is ``stalled``; resume starts it."""
    _, runs = chain
    body = {"branch_point_run_id": str(runs[1].pk), "mode": "replay", "source_run_id": str(runs[3].pk),
            "blind": False, "variants": [{"label": "a"}, {"label": "b"}]}
    comparison_id = post(api, "/api/comparisons", body).json()["id"]
    assert post(api, f"/api/comparisons/{comparison_id}/resume").json() == {"started": []}  # turn 1 still runs
    finish_all(comparison_id)  # no worker here: nothing advanced the replay
    assert api.get(f"/api/comparisons/{comparison_id}").json()["stalled"] is True
    started = post(api, f"/api/comparisons/{comparison_id}/resume").json()["started"]
    assert len(started) == 2
    assert {Run.objects.get(pk=r).comparison_turn.turn for r in started} == {1}


def test_list_is_paginated_and_blind_labels_stay_hidden(api, user, chain):
    _, runs = chain
    blind_id = start(api, runs).json()["id"]
    open_id = start(api, runs, blind=False).json()["id"]
    listed = api.get("/api/comparisons").json()
    assert listed["count"] == 2 and [c["id"] for c in listed["items"]] == [open_id, blind_id]
    assert listed["items"][0]["labels"] == ["Zanzibar-Owl", "Quetzal-Moth"] and listed["items"][1]["labels"] is None
    assert api.get("/api/comparisons", {"page": 2, "page_size": 2}).status_code == 404
    assert api.get("/api/comparisons", {"page_size": 1000}).status_code == 400


# --- results ------------------------------------------------------------------------------------------

def test_results_json_and_csv_with_the_page_filters(api, user, chain):
    _, runs = chain
    for tag, choice in (("alpha", "a_better"), ("alpha", "a_better"), ("beta", "b_better")):
        comparison_id = start(api, runs, variants=[{"label": "one", "model": "m1"}, {"label": "two", "model": "m2"}],
                              blind=False, tags=[tag]).json()["id"]
        finish_all(comparison_id)
        post(api, f"/api/comparisons/{comparison_id}/turns/0/vote", {"choice": choice})
    everything = api.get("/api/comparisons/results").json()
    assert everything["comparisons"] == 3 and everything["votes"] == 3
    best = everything["configurations"][0]
    assert (best["label"], best["wins"], best["losses"], best["model"]) == ("one", 2, 1, "m1")
    assert 0 < best["ci_low"] < best["win_rate"] < best["ci_high"] <= 1 and best["rating"] > 1500
    alpha = api.get("/api/comparisons/results", {"tag": "ALPHA"}).json()
    assert alpha["filters"] == {"tag": "alpha", "since": None, "until": None, "by": "configuration"}
    assert alpha["votes"] == 2
    by_model = api.get("/api/comparisons/results", {"by": "model"}).json()
    assert {c["label"] for c in by_model["configurations"]} == {"Default · m1", "Default · m2"}
    assert api.get("/api/comparisons/results", {"by": "colour"}).status_code == 400
    assert api.get("/api/comparisons/results", {"until": "2000-01-01"}).json()["comparisons"] == 0
    page_json = api.get("/compare/results.json", {"tag": "alpha"}).json()
    assert page_json == alpha  # the page's download and the API are one implementation

    response = api.get("/api/comparisons/results.csv", {"tag": "alpha"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["label"], r["wins"], r["losses"]) for r in rows] == [("one", "2", "0"), ("two", "0", "2")]
    assert response.content == api.get("/compare/results.csv", {"tag": "alpha"}).content

    for bad in ({"since": "yesterday"}, {"until": "2024-02-30"}, {"tag": "a\x00"}):
        for url in ("/api/comparisons/results", "/api/comparisons/results.csv"):
            response = api.get(url, bad)
            assert response.status_code == 400 and response.json()["detail"], (url, bad)


# --- auth and ownership -----------------------------------------------------------------------------

def _urls(comparison_id) -> list[tuple[str, str, dict | None]]:
    base = f"/api/comparisons/{comparison_id}"
    return [("get", base, None), ("get", f"{base}/turns/0/columns/0", None),
            ("post", f"{base}/turns/0/vote", {"choice": "tie"}), ("post", f"{base}/reveal", None),
            ("post", f"{base}/resume", None), ("post", f"{base}/columns/0/open", None)]


def test_anonymous_callers_get_401_everywhere(client, user, chain):
    _, runs = chain
    comparison_id = uuid.uuid4()
    calls = _urls(comparison_id) + [("get", "/api/comparisons", None), ("get", "/api/comparisons/results", None),
                                    ("get", "/api/comparisons/results.csv", None),
                                    ("post", "/api/comparisons", {"branch_point_run_id": str(runs[2].pk)})]
    for method, url, data in calls:
        response = post(client, url, data) if method == "post" else client.get(url)
        assert response.status_code == 401 and response.json()["detail"], url
    assert Comparison.objects.count() == 0


def test_another_users_comparisons_sessions_runs_and_agents_are_404(client, user, other_user, chain):
    """Every comparison URL answers 404 for someone else's comparison, and nothing changes; starting
    from their run or session, replaying their branch or using their agent is 404 too."""
    session, runs = chain
    client.force_login(user)
    theirs = post(client, "/api/comparisons", {"branch_point_run_id": str(runs[2].pk), "prompt": "p", "blind": False,
                                               "variants": [{"label": "a"}, {"label": "b"}]}).json()["id"]
    finish_all(theirs)
    Comparison.objects.filter(pk=theirs).update(owner=other_user)
    Session.objects.filter(pk=session.pk).update(owner=other_user)
    client.force_login(other_user)
    mine = SessionFactory(owner=other_user)
    own_runs = build_chain(mine, 2)
    client.force_login(user)
    before = counts()
    for method, url, data in _urls(theirs):
        response = post(client, url, data) if method == "post" else client.get(url)
        assert response.status_code == 404 and response.json()["detail"], url
    assert client.get("/api/comparisons").json()["count"] == 0
    assert client.get("/api/comparisons/results").json()["comparisons"] == 0

    my_session = SessionFactory(owner=user)
    my_runs = build_chain(my_session, 3)
    their_agent = AgentFactory(owner=other_user, name="Theirs")
    comparison_made = AgentFactory(owner=user, name="made", made_by_comparison=True)
    starts = [
        {"branch_point_run_id": str(runs[2].pk)},  # their session's run
        {"branch_point_run_id": str(own_runs[1].pk)},
        {"branch_point_run_id": str(my_runs[1].pk), "session_id": str(session.pk)},  # their session
        {"branch_point_run_id": str(my_runs[0].pk), "mode": "replay", "source_run_id": str(runs[4].pk)},
        {"branch_point_run_id": str(my_runs[1].pk), "variants": [{"label": "a", "agent_id": their_agent.pk},
                                                                 {"label": "b"}]},
        {"branch_point_run_id": str(my_runs[1].pk), "variants": [{"label": "a", "agent_id": comparison_made.pk},
                                                                 {"label": "b"}]},
        {"branch_point_run_id": str(uuid.uuid4())},
    ]
    for change in starts:
        body = {"prompt": "p", "variants": [{"label": "a"}, {"label": "b"}], **change}
        response = post(client, "/api/comparisons", body)
        assert response.status_code == 404 and response.json()["detail"], change
    assert counts() == (before[0], before[1], before[2] + 3, before[3] + 2, before[4])  # only my fixtures
    assert Comparison.objects.get(pk=theirs).votes.count() == 0


def test_bearer_token_works_for_comparisons(client, user, api_token, chain):
    _, runs = chain
    body = {"branch_point_run_id": str(runs[2].pk), "prompt": "p", "variants": [{"label": "a"}, {"label": "b"}]}
    response = client.post("/api/comparisons", data=json.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert response.status_code == 201 and Comparison.objects.get().owner == user


def test_the_schema_lists_every_comparison_operation(api):
    paths = api.get("/api/openapi.json").json()["paths"]
    expected = {
        "/api/comparisons": {"get", "post"}, "/api/comparisons/{comparison_id}": {"get"},
        "/api/comparisons/{comparison_id}/turns/{turn}/columns/{column}": {"get"},
        "/api/comparisons/{comparison_id}/turns/{turn}/vote": {"post"},
        "/api/comparisons/{comparison_id}/reveal": {"post"}, "/api/comparisons/{comparison_id}/resume": {"post"},
        "/api/comparisons/{comparison_id}/columns/{column}/open": {"post"},
        "/api/comparisons/results": {"get"}, "/api/comparisons/results.csv": {"get"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
        for method in methods:
            documented = set(paths[path][method]["responses"])
            assert {"401", "503"} <= documented, (path, method)
    assert "text/csv" in paths["/api/comparisons/results.csv"]["get"]["responses"]["200"]["content"]
