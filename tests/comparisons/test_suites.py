"""Suites: branches saved as regression cases, replayed on agents with the comparison machinery,
judged once their answers are in, listed per run with win rate and interval, and a trend."""

from __future__ import annotations

import json

import pytest
from scipy.stats import fisher_exact

from comparisons import advance, insights, services, suites, trends
from comparisons.models import Comparison, Judgement, Suite, SuiteCase, SuiteRun, VariantRun
from conversations.models import Message, Run, RunStatus
from core.errors import InvalidInput, NotFound
from tests.comparisons.conftest import finish_run
from tests.support.factories import AgentFactory, SessionFactory, build_chain
from tests.support.processes import wait_for


def post(client, url, data):
    return client.post(url, data=json.dumps(data), content_type="application/json")


def two_branches(user):
    session = SessionFactory(owner=user, title="Travel")
    runs = build_chain(session, 3)
    other = build_chain(session, 1, parent=runs[0])  # a second branch off the first turn
    return runs, other


@pytest.mark.django_db
def test_saving_branches_keeps_their_user_turns_and_references(user, other_user):
    runs, other = two_branches(user)
    suite = suites.suite_save(owner=user, name="Travel", leaves=[runs[-1], other[-1]], references=True)
    cases = list(suite.cases.all())
    assert cases[0].prompts == ["question 0", "question 1", "question 2"]
    assert cases[0].references == ["answer 0", "answer 1", "answer 2"]
    assert cases[1].prompts == ["question 0", "question 1"] and cases[1].title == "Travel"
    bare = suites.suite_save(owner=user, name="Bare", leaves=[runs[-1]], references=False)
    assert bare.cases.get().references == []
    with pytest.raises(InvalidInput, match="already"):
        suites.suite_save(owner=user, name="travel", leaves=[runs[-1]])
    theirs = build_chain(SessionFactory(owner=other_user), 1)
    with pytest.raises(NotFound):
        suites.suite_save(owner=user, name="Mixed", leaves=[runs[-1], theirs[-1]])
    assert not Suite.objects.filter(name="Mixed").exists() and SuiteCase.objects.count() == 3


@pytest.mark.django_db
def test_suite_api_errors_write_nothing_and_are_404_across_users(api, user, other_user):
    runs, _ = two_branches(user)
    theirs = build_chain(SessionFactory(owner=other_user), 1)
    assert post(api, "/api/suites", {"name": "x", "leaf_run_ids": [str(theirs[-1].pk)]}).status_code == 404
    bad = post(api, "/api/suites", {"name": "", "leaf_run_ids": [str(runs[-1].pk)]})
    assert bad.status_code == 400 and bad.json()["detail"]
    assert not Suite.objects.exists()
    made = post(api, "/api/suites", {"name": "Mine", "leaf_run_ids": [str(runs[-1].pk)]})
    assert made.status_code == 201 and made.json()["cases"][0]["prompts"][0] == "question 0"
    suite_id = made.json()["id"]
    a = AgentFactory(owner=user, name="a")
    foreign = AgentFactory(owner=other_user, name="f")
    runs_before = Run.objects.count()
    assert post(api, f"/api/suites/{suite_id}/runs", {"agent_ids": [a.pk, foreign.pk]}).status_code == 404
    bad = post(api, f"/api/suites/{suite_id}/runs", {"agent_ids": [a.pk, a.pk]})
    assert bad.status_code == 400 and "different" in bad.json()["detail"]
    bad = post(api, f"/api/suites/{suite_id}/runs", {"agent_ids": [a.pk, AgentFactory(owner=user, name="b").pk],
                                                     "judge": {"agent_id": a.pk, "template": "nope"}})
    assert bad.status_code == 400
    assert Run.objects.count() == runs_before and not SuiteRun.objects.exists()
    other_suite = suites.suite_save(owner=other_user, name="T", leaves=[theirs[-1]])
    assert api.get(f"/api/suites/{other_suite.pk}").status_code == 404
    assert api.get(f"/compare/suites/{other_suite.pk}/").status_code == 404


@pytest.mark.django_db
def test_suite_runs_are_listed_with_win_rate_interval_and_a_trend(user):
    """Without a worker: two runs of a 4-prompt suite; people vote; the table and the trend
    sentence follow (Fisher's exact test from scipy on the two runs' wins and losses)."""
    session = SessionFactory(owner=user)
    suite = suites.suite_save(owner=user, name="S", leaves=[build_chain(session, 4)[-1]])
    base, challenger = AgentFactory(owner=user, name="base"), AgentFactory(owner=user, name="new")
    outcomes = [["challenger"] * 1 + ["base"] * 3, ["challenger"] * 4]
    for wanted in outcomes:
        run = suites.suite_run_start(suite=suite, agents=[base, challenger], blind=True)
        comparison = run.comparisons.get()
        assert comparison.branch_point_id is None and comparison.suite_case.position == 0
        for turn in range(4):
            for vr in VariantRun.objects.filter(variant__comparison=comparison, turn=turn).select_related("run"):
                assert (vr.run.parent_run_id is None) == (turn == 0)
                finish_run(vr.run, f"answer {turn}")
                advance.variant_advance(variant_id=vr.variant_id, finished_run_id=vr.run_id)
        for turn, winner in enumerate(wanted):
            left_is_base = comparison.column_order[0] == 0
            choice = "a_better" if (winner == "base") == left_is_base else "b_better"
            services.vote_cast(comparison=comparison, turn=turn, choice=choice)
    rows = trends.suite_runs(suite)
    assert [(r["challengers"][0]["wins"], r["challengers"][0]["losses"]) for r in rows] == [(1, 3), (4, 0)]
    assert rows[1]["challengers"][0]["ci_low"] == pytest.approx(0.5101, abs=1e-4)  # Wilson, 4 of 4
    assert rows[1]["challengers"][0]["rating"] > 0 > rows[0]["challengers"][0]["rating"]
    trend = trends.trend(rows)
    p = fisher_exact([[1, 3], [4, 0]]).pvalue
    assert trend["sentence"] == ("Against the baseline, new's win rate went from 25% to 100%: "
                                 f"not a significant change (Fisher's exact test, p = {p:.2f}).")
    [series] = trend["series"]
    assert len(series["points"]) == 2 and series["path"].startswith("M")


def _vote_run(suite, agents, winners):
    """One suite run on ``agents`` (the baseline first) of a one-case suite, every answer in, and each
    prompt voted for the agent at position ``winners[turn]`` (a ranking: the winner first)."""
    run = suites.suite_run_start(suite=suite, agents=agents, blind=True)
    comparison = run.comparisons.get()
    for turn in range(len(winners)):  # each finished answer queues the next turn's run
        for vr in VariantRun.objects.filter(variant__comparison=comparison, turn=turn).select_related("run"):
            finish_run(vr.run, f"answer {turn}")
            advance.variant_advance(variant_id=vr.variant_id, finished_run_id=vr.run_id)
    for turn, winner in enumerate(winners):
        ranks = {column: 1 if position == winner else 2 for column, position in enumerate(comparison.column_order)}
        if len(agents) == 2:
            services.vote_cast(comparison=comparison, turn=turn, choice="a_better" if ranks[0] == 1 else "b_better")
        else:
            services.vote_cast(comparison=comparison, turn=turn, choice="ranking", ranking=ranks)
    return run


@pytest.mark.django_db
def test_the_trend_plots_every_challenger(api, user):
    """Baseline against model B, then against B and C: one series per challenger, each with its own
    points and sentence; the API carries the same series."""
    session = SessionFactory(owner=user)
    suite = suites.suite_save(owner=user, name="Trend", leaves=[build_chain(session, 4)[-1]])
    base, b, c = (AgentFactory(owner=user, name=n) for n in ("base", "model B", "model C"))
    _vote_run(suite, [base, b], [0, 0, 0, 1])
    _vote_run(suite, [base, b, c], [1, 1, 2, 2])
    rows = trends.suite_runs(suite)
    trend = trends.trend(rows)
    assert [s["name"] for s in trend["series"]] == ["model B", "model C"]
    b_series, c_series = trend["series"]
    assert len(b_series["points"]) == 2 and len(c_series["points"]) == 1 and b_series["colour"] != c_series["colour"]
    assert c_series["points"][0]["x"] != b_series["points"][1]["x"], "side by side in the second run"
    assert "model B's win rate went from 25% to" in trend["sentence"]
    assert "model C: one run with decisive verdicts so far" in trend["sentence"]
    body = api.get(f"/api/suites/{suite.pk}").json()
    assert [(s["agent"]["name"], [p["suite_run"] for p in s["points"]]) for s in body["trend_series"]] == [
        ("model B", [0, 1]), ("model C", [1])]
    assert body["trend"] == trend["sentence"]
    html = api.get(f"/compare/suites/{suite.pk}/").content.decode()
    assert html.count('<g class="series"') == 2 and "model C</li>" in html


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_suite_run_replays_on_the_worker_and_is_judged_when_its_answers_are_in(celery_worker, llm_server, user):
    session = SessionFactory(owner=user)
    runs = build_chain(session, 3)
    suite = suites.suite_save(owner=user, name="Worker suite", leaves=[runs[-1]])
    base = AgentFactory(owner=user, name="base", model="model-x")
    challenger = AgentFactory(owner=user, name="new", model="model-y")
    judge = AgentFactory(owner=user, name="judge", model="judge-model")
    run = suites.suite_run_start(suite=suite, agents=[base, challenger], judge=judge, rubric_name="Helpfulness",
                                 rubric_text="Which helps? [[reply:The first. Verdict: 1]]")
    comparison = Comparison.objects.get(suite_run=run)
    wait_for(lambda: Judgement.objects.filter(judging__comparison=comparison, recorded_at__isnull=False).count() == 6,
             timeout=90, message="3 prompts judged in both orders")
    chains = VariantRun.objects.filter(variant__comparison=comparison).select_related("run")
    assert {vr.run.status for vr in chains} == {RunStatus.SUCCEEDED}
    for vr in chains:
        assert Message.objects.get(run=vr.run, position=0).content == f"question {vr.turn}"
    assert comparison.judgings.count() == 1  # judged once, whatever the number of run_finished signals
    state = insights.judging_state(comparison.judgings.get())
    assert state["flips"] == 3 and state["position_bias"]["biased"]


@pytest.mark.django_db
def test_suite_pages_save_run_and_show_the_trend(client, user):
    client.force_login(user)
    runs, _ = two_branches(user)
    page = client.get("/compare/suites/").content.decode()
    assert f'value="{runs[-1].pk}"' in page and "3 turns" in page
    bad = client.post("/compare/suites/", {"name": "", "leaves": [str(runs[-1].pk)]})
    assert bad.status_code == 400 and not Suite.objects.exists()
    r = client.post("/compare/suites/", {"name": "Pages", "leaves": [str(runs[-1].pk)], "references": "1"})
    suite = Suite.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/compare/suites/{suite.pk}/"
    base, new = AgentFactory(owner=user, name="base"), AgentFactory(owner=user, name="new")
    missing = client.post(f"/compare/suites/{suite.pk}/run", {"baseline": base.pk, "challenger": ""})
    assert missing.status_code == 400 and "Choose the baseline and the challenger." in missing.content.decode()
    r = client.post(f"/compare/suites/{suite.pk}/run", {"baseline": base.pk, "challenger": new.pk, "blind": "1"})
    assert r.status_code == 302 and SuiteRun.objects.count() == 1
    html = client.get(r["Location"]).content.decode()
    assert 'id="suite-runs"' in html and "no decisive verdict yet" in html and 'id="trend"' in html
    assert "Only one run has decisive verdicts" not in html and "Run the suite again to see a trend." in html
