"""Judges, rubrics and the evaluation figures through the JSON API and the pages: 404 across users,
JSON 4xx with ``detail`` and nothing written, and the exports' new columns."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from comparisons import insights, judging, services
from comparisons.models import Comparison, Judgement, Judging, Rubric
from comparisons.services import VariantSpec
from conversations.models import Run, Session
from tests.comparisons.conftest import finish_run
from tests.support.factories import AgentFactory, SessionFactory, build_chain

pytestmark = pytest.mark.django_db


def post(client, url, data=None, method="post"):
    return getattr(client, method)(url, data=json.dumps(data) if data is not None else "",
                                   content_type="application/json")


def answered(user, *, blind=False, answers=("Short.", "# A longer answer\n- with **markdown**\n- and a list"),
             tags=("geo",), prompts=1):
    session = SessionFactory(owner=user)
    runs = build_chain(session, 2 + prompts)
    comparison = services.comparison_start(
        owner=user, session=session, branch_point=runs[1], blind=blind, tags=tags,
        mode="replay" if prompts > 1 else "new_prompt", source_run=runs[-1] if prompts > 1 else None,
        prompt="Capital?", variants=[VariantSpec(label="Terse", model="model-a"),
                                     VariantSpec(label="Chatty", model="model-b")])
    for vr in comparison.variants.order_by("position"):
        for turn_run in vr.variant_runs.all():
            finish_run(turn_run.run, answers[vr.position])
    return comparison


def judge_all(j, reply):
    for call in j.judgements.all():
        finish_run(call.run, reply(call))
        judging.judgement_record(run_id=call.run_id)


def test_rubric_api_templates_create_update_and_errors(api, user, other_user):
    templates = api.get("/api/rubrics/templates").json()
    assert [t["key"] for t in templates] == ["helpfulness", "correctness", "instructions", "harmlessness"]
    r = post(api, "/api/rubrics", {"name": "Mine", "text": "Be fair.", "scale_max": 5, "pass_threshold": 4})
    assert r.status_code == 201 and r.json()["pass_threshold"] == 4
    bad = post(api, "/api/rubrics", {"name": "", "text": "x", "scale_max": 50, "pass_threshold": 3})
    assert bad.status_code == 400 and "scale_max" in bad.json()["detail"] and "name" in bad.json()["detail"]
    dup = post(api, "/api/rubrics", {"name": "mine", "text": "y"})
    assert dup.status_code == 400 and "already" in dup.json()["detail"]
    assert Rubric.objects.count() == 1
    theirs = Rubric.objects.create(owner=other_user, name="Theirs", text="t")
    assert post(api, f"/api/rubrics/{theirs.pk}", {"name": "x", "text": "y"}, method="put").status_code == 404
    edited = post(api, f"/api/rubrics/{r.json()['id']}", {"name": "Mine", "text": "Be very fair."}, method="put")
    assert edited.status_code == 200 and edited.json()["text"] == "Be very fair."


def test_judging_api_start_read_and_cross_user(api, user, other_user):
    comparison = answered(user, blind=True)
    agent = AgentFactory(owner=user, name="judge", model="judge-model")
    foreign_agent = AgentFactory(owner=other_user, name="theirs")
    foreign_rubric = Rubric.objects.create(owner=other_user, name="T", text="t")
    url = f"/api/comparisons/{comparison.pk}/judgings"
    runs_before = Run.objects.count()
    assert post(api, url, {"agent_id": foreign_agent.pk, "template": "helpfulness"}).status_code == 404
    assert post(api, url, {"agent_id": agent.pk, "rubric_id": foreign_rubric.pk}).status_code == 404
    bad = post(api, url, {"agent_id": agent.pk, "template": "nope"})
    assert bad.status_code == 400 and "template must be one of" in bad.json()["detail"]
    bad = post(api, url, {"agent_id": agent.pk, "rubric_name": "x", "rubric_text": ""})
    assert bad.status_code == 400 and bad.json()["detail"]
    assert Run.objects.count() == runs_before and not Judging.objects.exists()
    assert not Session.objects.filter(title__startswith="Judge").exists()

    r = post(api, url, {"agent_id": agent.pk, "template": "correctness"})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["total"] == 2 and body["done"] == 0 and body["scale_max"] == 5
    assert [c["order"] for c in body["pairs"][0]["calls"]] == [["A", "B"], ["B", "A"]]
    found = Judging.objects.get()
    judge_all(found, lambda call: "Scores: 4, 3\nVerdict: 1" if call.first == 0 else "Scores: 3, 4\nVerdict: 2")
    body = api.get(f"{url}/{found.pk}").json()
    assert body["complete"] and body["pairs"][0]["verdict"] == "a" and not body["pairs"][0]["flipped"]
    assert body["position_bias"]["rate"] == 0.5 and not body["position_bias"]["biased"]
    assert body["pairs"][0]["calls"][0]["score_first"] == 4
    assert api.get(url).json()[0]["id"] == found.pk

    other = answered(other_user)
    assert api.get(f"/api/comparisons/{other.pk}/judgings").status_code == 404
    assert post(api, f"/api/comparisons/{other.pk}/judgings", {"agent_id": agent.pk,
                                                               "template": "helpfulness"}).status_code == 404
    assert api.get(f"{url}/999999").status_code == 404
    assert api.get(f"/api/comparisons/{other.pk}/agreement").status_code == 404


def test_no_answers_yet_is_409_with_detail(api, user):
    session = SessionFactory(owner=user)
    runs = build_chain(session, 2)
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[1], prompt="?",
                                           variants=[VariantSpec(label="a"), VariantSpec(label="b")])
    agent = AgentFactory(owner=user, name="judge")
    r = post(api, f"/api/comparisons/{comparison.pk}/judgings", {"agent_id": agent.pk, "template": "helpfulness"})
    assert r.status_code == 409 and "answers" in r.json()["detail"] and not Judgement.objects.exists()


def test_results_carry_agreement_sources_style_votes_needed_and_the_new_export_columns(api, user):
    """Six comparisons: people prefer the chatty column 5 times of 6; the judge agrees 4 times."""
    agent = AgentFactory(owner=user, name="judge")
    comparisons = [answered(user) for _ in range(6)]
    for i, comparison in enumerate(comparisons):
        services.vote_cast(comparison=comparison, turn=0, choice="b_better" if i else "a_better")
        found = judging.judging_start(comparison=comparison, agent=agent, rubric_name="r", rubric_text="t")
        says_b = i not in (0, 1)  # agrees on 2..5 (B) and on 0 (A); disagrees on 1
        prefers_b = {0: 2, 1: 1} if says_b else {0: 1, 1: 2}  # first column shown → the verdict
        judge_all(found, lambda call, v=prefers_b: f"Verdict: {v[call.first]}")
    body = api.get("/api/comparisons/results").json()
    e = body["evaluation"]
    assert e["agreement"]["n"] == 6 and e["agreement"]["agreement"] == pytest.approx(5 / 6)
    assert e["agreement"]["sentence"].startswith("The judge agrees with your votes 83 % of the time over 6 pairs")
    assert e["by_tag"][0]["tag"] == "geo" and e["by_tag"][0]["n"] == 6
    assert e["counts"] == {"people": 6, "judge": 6}
    assert e["votes_needed"][0]["leader"] == "Chatty" and e["votes_needed"][0]["wins"] == 5
    assert e["position_bias"]["judge"]["rate"] == 0.5 and e["position_bias"]["judge_flips"] == 0
    chatty = next(c for c in body["configurations"] if c["label"] == "Chatty")
    assert chatty["people_games"] == 6 and chatty["judge_games"] == 6 and chatty["both_games"] == 12
    assert chatty["raw"] is not None and chatty["controlled_low"] is not None
    by_model = api.get("/api/comparisons/results?by=model").json()
    model_b = next(c for c in by_model["configurations"] if c["model"] == "model-b")
    assert model_b["key"] == "Default · model-b" and model_b["people_games"] == 6 and model_b["judge_games"] == 6
    csv_text = api.get("/api/comparisons/results.csv").content.decode()
    header = next(csv.reader(io.StringIO(csv_text)))
    for column in ("people_rating", "judge_rating", "both_rating", "raw", "controlled", "controlled_high"):
        assert column in header
    page = api.get("/compare/results/")
    html = page.content.decode()
    assert page.status_code == 200 and "The judge agrees with your votes 83 %" in html
    assert 'id="style-ratings"' in html and 'id="votes-needed"' in html and "Style-controlled" in html
    exported = api.get("/compare/results.json").json()
    assert exported["evaluation"]["agreement"]["n"] == 6 and "controlled" in exported["configurations"][0]


def test_the_evaluation_block_is_read_from_the_cache_until_a_vote_or_judgement_changes(user, monkeypatch):
    comparisons = [answered(user) for _ in range(2)]
    services.vote_cast(comparison=comparisons[0], turn=0, choice="b_better")
    owned = Comparison.objects.owned_by(user)
    first = insights.cached_evaluation(owned)
    assert first["counts"] == {"people": 1, "judge": 0}
    computed = []
    compute = insights.evaluation
    monkeypatch.setattr(insights, "evaluation", lambda *a, **kw: computed.append(1) or compute(*a, **kw))
    with CaptureQueriesContext(connection) as queries:
        again = insights.cached_evaluation(owned)
    assert again == first and not computed and len(queries) == 4  # only the key's counts
    services.vote_cast(comparison=comparisons[1], turn=0, choice="a_better")
    assert insights.cached_evaluation(owned)["counts"] == {"people": 2, "judge": 0} and len(computed) == 1
    found = judging.judging_start(comparison=comparisons[0], agent=AgentFactory(owner=user, name="judge"),
                                  rubric_name="r", rubric_text="t")
    judge_all(found, lambda call: "Verdict: 2")
    assert insights.cached_evaluation(owned)["counts"] == {"people": 2, "judge": 1} and len(computed) == 2
    assert insights.cached_evaluation(owned, by="model")["counts"] == {"people": 2, "judge": 1} and len(computed) == 3


def test_judge_pages_start_show_progress_and_are_404_across_users(client, user, other_user):
    client.force_login(user)
    comparison = answered(user, blind=True)
    agent = AgentFactory(owner=user, name="judge", model="judge-model")
    form = client.get(f"/compare/{comparison.pk}/judge/?template=correctness")
    assert form.status_code == 200 and "Score each answer from 1" in form.content.decode()
    bad = client.post(f"/compare/{comparison.pk}/judge/", {"agent": "", "rubric_name": "x", "rubric_text": "y"})
    assert bad.status_code == 400 and "Choose the judge agent." in bad.content.decode()
    r = client.post(f"/compare/{comparison.pk}/judge/",
                    {"agent": agent.pk, "rubric_name": "Mine", "rubric_text": "Fair?", "scale_max": "0",
                     "save_rubric": "1"})
    found = Judging.objects.get()
    assert r.status_code == 302 and r["Location"].endswith(f"/judgings/{found.pk}/")
    assert Rubric.objects.filter(owner=user, name="Mine").exists()
    page = client.get(r["Location"]).content.decode()
    assert "0 of 2" in page and f'sse-connect="/compare/{comparison.pk}/judgings/{found.pk}/events"' in page
    assert "Terse" not in page and "Chatty" not in page  # blind: no labels
    judge_all(found, lambda call: "Verdict: 1")
    page = client.get(r["Location"]).content.decode()
    assert "2 of 2" in page and "1 of 1 pair flipped" in page and "sse-connect" not in page, "complete: no stream"
    # 2 of 2 first-position wins: Wilson's interval (34 %–100 %) still holds ½; too few to call it bias
    assert "won 2 of 2 decisive verdicts (100 %, 95 % interval 34–100 %)" in page
    assert "No position bias detected" in page
    client.force_login(other_user)
    assert client.get(r["Location"]).status_code == 404
    assert client.get(f"/compare/{comparison.pk}/judge/").status_code == 404
