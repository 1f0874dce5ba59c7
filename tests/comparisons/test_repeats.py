"""Repeats: k answers per variant and prompt (the voted one plus siblings with the seed raised),
chained in replays, and their spread with intervals clustered by prompt."""

from __future__ import annotations

import json

import pytest

from comparisons import advance, evaluation, insights, services, trends
from comparisons.models import Comparison, RepeatSample, VariantRun
from comparisons.services import VariantSpec
from conversations.models import Run
from core.errors import InvalidInput
from tests.comparisons.conftest import finish_run
from tests.support.factories import SessionFactory, build_chain

pytestmark = pytest.mark.django_db


def specs():
    return [VariantSpec(label="seeded", model="m-a", params={"seed": 40}), VariantSpec(label="plain", model="m-b")]


def test_samples_start_sibling_repeats_with_raised_seeds(user, chain):
    session, runs = chain
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[2], variants=specs(),
                                           prompt="Roll a die", samples=3)
    assert comparison.samples == 3
    for variant in comparison.variants.all():
        main = VariantRun.objects.get(variant=variant).run
        repeats = list(RepeatSample.objects.filter(variant=variant).select_related("run").order_by("sample"))
        assert [r.sample for r in repeats] == [1, 2]
        base = 40 if variant.label == "seeded" else 0
        for r in repeats:
            assert r.run.parent_run_id == main.parent_run_id == runs[2].pk  # siblings of the voted run
            assert r.run.messages.get(position=0).content == "Roll a die"
            assert r.run.params["seed"] == base + r.sample and r.run.model == main.model
    assert Run.objects.children_of(runs[2]).count() == 1 + 2 * 3


@pytest.mark.parametrize("bad", [0, 11, True, "3"])
def test_bad_sample_counts_write_nothing(user, chain, bad):
    session, runs = chain
    before = (Comparison.objects.count(), Run.objects.count())
    with pytest.raises(InvalidInput, match="samples"):
        services.comparison_start(owner=user, session=session, branch_point=runs[2], variants=specs(), prompt="x",
                                  samples=bad)
    assert (Comparison.objects.count(), Run.objects.count()) == before


def test_replayed_turns_get_their_repeats_and_the_spread_is_clustered_by_prompt(user):
    session = SessionFactory(owner=user)
    runs = build_chain(session, 4)
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[0], variants=specs(),
                                           mode="replay", source_run=runs[3], samples=2)
    lengths = {0: [10, 14], 1: [30, 50], 2: [5, 7]}  # per turn: the voted answer, then the repeat
    for turn in range(3):
        for vr in VariantRun.objects.filter(variant__comparison=comparison, turn=turn).select_related("run"):
            finish_run(vr.run, "x" * lengths[turn][0])
            repeat = RepeatSample.objects.get(variant=vr.variant, turn=turn)
            assert repeat.run.parent_run_id == vr.run.parent_run_id
            finish_run(repeat.run, "x" * lengths[turn][1])
            advance.variant_advance(variant_id=vr.variant_id, finished_run_id=vr.run_id)
    stats = trends.repeat_stats(comparison)
    assert [s["answers"] for s in stats] == [6, 6] and stats[0]["label"] == "seeded"
    values = [n for turn in range(3) for n in lengths[turn]]
    expected = evaluation.clustered_mean(values, [t for t in range(3) for _ in range(2)])
    assert stats[0]["length_mean"] == pytest.approx(expected)
    assert stats[0]["length"]["min"] == 5 and stats[0]["length"]["max"] == 50


def test_the_page_and_the_api_take_samples(api, user, chain):
    session, runs = chain
    r = api.post("/api/comparisons", data=json.dumps({
        "branch_point_run_id": str(runs[2].pk), "prompt": "p", "samples": 2, "blind": False,
        "variants": [{"label": "a", "model": "m1"}, {"label": "b", "model": "m2"}]}), content_type="application/json")
    assert r.status_code == 201, r.content
    comparison = Comparison.objects.get()
    assert comparison.samples == 2 and RepeatSample.objects.filter(variant__comparison=comparison).count() == 2
    bad = api.post("/api/comparisons", data=json.dumps({
        "branch_point_run_id": str(runs[2].pk), "prompt": "p", "samples": 50,
        "variants": [{"label": "a"}, {"label": "b"}]}), content_type="application/json")
    assert bad.status_code == 400 and "samples" in bad.json()["detail"] and Comparison.objects.count() == 1
    for vr in VariantRun.objects.select_related("run"):
        finish_run(vr.run, "answer")
    for rs in RepeatSample.objects.select_related("run"):
        finish_run(rs.run, "a longer answer")
    html = api.get(f"/compare/{comparison.pk}/").content.decode()
    assert 'id="repeats"' in html and "2 answers per variant and prompt" in html


def test_a_judge_with_a_pass_threshold_scores_every_repeat_and_gives_pass_k(api, user, chain):
    """With a pass threshold the judge also scores each repeat (both orders); an answer passes when
    its mean score reaches the threshold; pass^k per column on the page, in the comparison's and the
    judging's API; only the voted answers' verdicts count as the judge's pairs."""
    from comparisons import judging
    from comparisons.models import Judgement
    from memory.models import Agent

    session, runs = chain
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[2], variants=specs(),
                                           prompt="Roll a die", samples=3, blind=False)
    for vr in VariantRun.objects.filter(variant__comparison=comparison).select_related("run"):
        finish_run(vr.run, "voted")
    for rs in RepeatSample.objects.filter(variant__comparison=comparison).select_related("run"):
        finish_run(rs.run, f"repeat {rs.sample}")
    judge = Agent.objects.create(owner=user, name="scorer", model="judge-model")
    found = judging.judging_start(comparison=comparison, agent=judge, rubric_name="Good", rubric_text="Is it good?",
                                  scale_max=5, pass_threshold=4)
    calls = list(found.judgements.select_related("run").order_by("sample", "first"))
    assert [(c.sample, c.first, c.second) for c in calls] == [(s, a, b) for s in range(3) for a, b in ((0, 1), (1, 0))]
    score = {(0, s): 5 if s < 2 else 1 for s in range(3)} | {(1, s): 4 for s in range(3)}  # (column, sample)
    for call in calls:
        finish_run(call.run, f"Fine.\nScores: {score[(call.first, call.sample)]}, "
                             f"{score[(call.second, call.sample)]}\nVerdict: 1")
        judging.judgement_record(run_id=call.run_id)
    assert Judgement.objects.filter(judging=found, recorded_at__isnull=False).count() == 6

    passes = trends.pass_at_k(comparison, found)
    assert passes[0] == {"k": 3, "pass_k": 0.0, "pass_1": pytest.approx(2 / 3), "prompts": 1}
    assert passes[1] == {"k": 3, "pass_k": 1.0, "pass_1": 1.0, "prompts": 1}
    assert passes[0]["pass_k"] == evaluation.pass_hat_k([[True, True, False]], 3)

    state = insights.judging_state(found)
    assert state["total"] == 6 and len(state["pairs"]) == 1, "one voted pair; the repeats are scored, not paired"
    assert state["position_bias"]["decisive"] == 2, "the voted answers' two calls only"

    body = api.get(f"/api/comparisons/{comparison.pk}").json()
    by_letter = {r["letter"]: r["passes"] for r in body["repeats"]}
    assert by_letter["A"]["pass_k"] == passes[0]["pass_k"] and by_letter["A"]["k"] == 3
    judged = api.get(f"/api/comparisons/{comparison.pk}/judgings/{found.pk}").json()
    assert judged["pass_k"]["A"]["pass_1"] == pytest.approx(2 / 3) and judged["pass_k"]["B"]["pass_k"] == 1.0
    html = api.get(f"/compare/{comparison.pk}/").content.decode()
    assert "pass^3</abbr>" in html and "100 % <span class=\"muted\">(pass^1 100 %, 1 prompt)" in html
    assert "0 % <span class=\"muted\">(pass^1 67 %, 1 prompt)" in html
