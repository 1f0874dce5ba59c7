"""LLM judges: the judge prompt and reply reader, starting a judging (both orders, no labels, all or
nothing), recording replies, flips and position bias, and the judge against people's votes."""

from __future__ import annotations

import pytest

from comparisons import insights, judges, judging, services
from comparisons.models import Judgement, JudgeVerdict
from comparisons.services import VariantSpec
from conversations.models import Run, RunStatus
from core.errors import Conflict, InvalidInput, NotFound
from tests.comparisons.conftest import finish_run
from tests.support.factories import AgentFactory

# --- the prompt and the reply ---------------------------------------------------------------------------


def test_read_reply_finds_the_last_verdict_and_scores():
    r = judges.read_reply("Answer 1 is clearer.\nScores: 4, 2\nVerdict: 1", scale_max=5)
    assert (r.verdict, r.score_first, r.score_second, r.error) == ("first", 4, 2, "")
    assert r.rationale == "Answer 1 is clearer."
    assert judges.read_reply("maybe Verdict: 1 ... final Verdict: Both bad").verdict == "both_bad"
    assert judges.read_reply("VERDICT: tie").verdict == "tie"
    assert judges.read_reply("Verdict: 2\nScores: 9, 1", scale_max=5).score_first is None  # out of the scale
    nothing = judges.read_reply("I like both.")
    assert nothing.verdict == "" and nothing.error == "The judge's reply has no verdict line."


def test_both_orders_combine_in_column_terms():
    # forward shows x first, backward shows y first
    assert judges.in_columns("first", 0, 1) == "a" and judges.in_columns("first", 1, 0) == "b"
    assert judges.in_columns("second", 1, 0) == "a" and judges.in_columns("tie", 1, 0) == "tie"
    assert judges.combine("a", "a") == ("a", False)
    assert judges.combine("a", "b") == ("tie", True)  # "the first is better" both times: a flip
    assert judges.combine("a", "tie") == ("tie", False)
    assert judges.combine("", "a") == ("", False)


def test_judge_prompt_cuts_long_answers_and_keeps_the_rubric_last():
    text = judges.judge_prompt(prompt="Q?", first="x" * 50_000, second="short", rubric="Be fair.", scale_max=5,
                               max_chars=10_000)
    assert len(text) <= 10_000 and judges.ANSWER_CUT_MARK in text
    assert text.index("## Answer 1") < text.index("## Answer 2") < text.index("## Rubric")
    assert "Scores: X, Y" in text and "from 1 to 5" in text


# --- services ---------------------------------------------------------------------------------------------

def finished_comparison(user, chain, *, blind=True, answers=("Paris.", "It is Paris, the capital of France.")):
    session, runs = chain
    comparison = services.comparison_start(
        owner=user, session=session, branch_point=runs[1], blind=blind,
        variants=[VariantSpec(label="Terse", model="model-a"), VariantSpec(label="Chatty", model="model-b")],
        prompt="Capital of France?",
    )
    for vr in comparison.variants.order_by("position"):
        finish_run(vr.variant_runs.get(turn=0).run, answers[vr.position])
    return comparison


@pytest.mark.django_db
def test_judging_runs_both_orders_as_root_runs_without_labels(user, chain):
    comparison = finished_comparison(user, chain)
    judge = AgentFactory(owner=user, name="judge", model="judge-model", system_prompt="You judge.")
    j = judging.judging_start(comparison=comparison, agent=judge, rubric_name="Helpfulness",
                              rubric_text=judges.RUBRIC_TEMPLATES["helpfulness"]["text"])
    calls = list(j.judgements.select_related("run").order_by("first"))
    assert [(c.turn, c.first, c.second) for c in calls] == [(0, 0, 1), (0, 1, 0)]
    for call in calls:
        run = call.run
        assert run.parent_run_id is None and run.session_id == j.session_id and run.agent_id == judge.pk
        assert run.status == RunStatus.QUEUED and run.model == "judge-model"
        text = run.messages.get(position=0).content
        for secret in ("Terse", "Chatty", "model-a", "model-b"):
            assert secret not in text  # the judge never sees labels or models
        assert "Capital of France?" in text
    first_text = calls[0].run.messages.get(position=0).content
    left = comparison.column_order[0]
    left_answer = ("Paris.", "It is Paris, the capital of France.")[left]
    assert first_text.index(left_answer) < first_text.index("## Answer 2")
    assert j.session.owner_id == user.pk and j.session.active_run_id is None


@pytest.mark.django_db
def test_bad_rubric_or_foreign_agent_writes_nothing(user, other_user, chain):
    comparison = finished_comparison(user, chain)
    mine = AgentFactory(owner=user, name="judge")
    foreign = AgentFactory(owner=other_user, name="theirs")
    before = Run.objects.count()
    with pytest.raises(InvalidInput, match="scale_max"):
        judging.judging_start(comparison=comparison, agent=mine, rubric_name="x", rubric_text="y", scale_max=99)
    with pytest.raises(InvalidInput, match="pass_threshold"):
        judging.judging_start(comparison=comparison, agent=mine, rubric_name="x", rubric_text="y", pass_threshold=3)
    with pytest.raises(NotFound):
        judging.judging_start(comparison=comparison, agent=foreign, rubric_name="x", rubric_text="y")
    assert Run.objects.count() == before and not Judgement.objects.exists()


@pytest.mark.django_db
def test_no_judging_before_the_answers_are_in(user, chain):
    session, runs = chain
    comparison = services.comparison_start(
        owner=user, session=session, branch_point=runs[1], prompt="?",
        variants=[VariantSpec(label="a"), VariantSpec(label="b")])
    with pytest.raises(Conflict):
        judging.judging_start(comparison=comparison, agent=AgentFactory(owner=user, name="j"),
                              rubric_name="r", rubric_text="t")


@pytest.mark.django_db
def test_a_first_position_judge_is_caught_and_compared_with_the_vote(user, chain):
    comparison = finished_comparison(user, chain, blind=False)
    j = judging.judging_start(comparison=comparison, agent=AgentFactory(owner=user, name="j"),
                              rubric_name="Correctness", rubric_text="t", scale_max=5, pass_threshold=4)
    for call in j.judgements.all():
        finish_run(call.run, "The first reads better.\nScores: 5, 3\nVerdict: 1", prompt_tokens=100,
                   completion_tokens=12)
        assert judging.judgement_record(run_id=call.run_id).verdict == JudgeVerdict.FIRST
    assert judging.judgement_record(run_id=call.run_id) is None  # recorded once
    state = insights.judging_state(j)
    assert state["complete"] and state["done"] == state["total"] == 2
    assert state["flips"] == 1 and state["pairs"][0]["verdict"] == "tie" and state["pairs"][0]["flipped"]
    bias = state["position_bias"]
    assert bias["first_wins"] == 2 and bias["decisive"] == 2 and bias["rate"] == 1.0
    assert state["prompt_tokens"] == 200 and state["completion_tokens"] == 24
    assert Judgement.objects.filter(judging=j, score_first=5, score_second=3,
                                    rationale="The first reads better.").count() == 2
    services.vote_cast(comparison=comparison, turn=0, choice="b_better")
    agreement = insights.comparison_agreement(comparison)
    assert agreement["n"] == 1 and agreement["agreement"] == 0.0
    assert agreement["table"][2][1] == 1  # judge: tie, person: B


@pytest.mark.django_db
def test_a_failed_judge_run_is_recorded_with_its_error(user, chain):
    comparison = finished_comparison(user, chain)
    j = judging.judging_start(comparison=comparison, agent=AgentFactory(owner=user, name="j"),
                              rubric_name="r", rubric_text="t")
    call = j.judgements.first()
    finish_run(call.run, "", status=RunStatus.FAILED)
    recorded = judging.judgement_record(run_id=call.run_id)
    assert recorded.verdict == "" and recorded.error.startswith("The judge's run failed")
    assert insights.judging_state(j)["done"] == 1


# --- on a real worker against the scripted model server ----------------------------------------------------

@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_judge_that_always_prefers_the_first_answer_is_caught(celery_worker, llm_server, user):
    """Two variants answer two replayed prompts on the worker; a judge model scripted to say "1"
    whatever it is shown is judged in both orders: every pair flips (ties), its first-position rate
    is 100 % with an interval above ½, and each judge call is an audited run (context and model call
    steps, tokens)."""
    from comparisons.models import Mode, VariantRun
    from conversations.models import Step, StepKind
    from tests.support.factories import SessionFactory, build_chain
    from tests.support.processes import wait_for

    session = SessionFactory(owner=user)
    runs = build_chain(session, 4)
    comparison = services.comparison_start(
        owner=user, session=session, branch_point=runs[1], mode=Mode.REPLAY, source_run=runs[3], blind=True,
        variants=[VariantSpec(label="x", model="model-x"), VariantSpec(label="y", model="model-y")])
    wait_for(lambda: VariantRun.objects.filter(variant__comparison=comparison, run__status="succeeded").count() == 4,
             timeout=60, message="4 answers")
    judge = AgentFactory(owner=user, name="first-lover", model="judge-model")
    j = judging.judging_start(comparison=comparison, agent=judge, rubric_name="Helpfulness",
                              rubric_text="Which helps more? [[reply:Answer 1 is better. Verdict: 1]]")
    wait_for(lambda: not Judgement.objects.filter(judging=j, recorded_at__isnull=True).exists(), timeout=60,
             message="4 judge calls recorded")
    state = insights.judging_state(j)
    assert state["total"] == state["done"] == 4
    assert state["flips"] == 2 and all(p["verdict"] == "tie" and p["flipped"] for p in state["pairs"])
    bias = state["position_bias"]
    assert bias["rate"] == 1.0 and bias["biased"] and bias["low"] > 0.5
    sent = [r["body"] for r in llm_server.requests if r["body"]["model"] == "judge-model"]
    assert len(sent) == 4
    for body in sent:
        assert "model-x" not in str(body["messages"]) and "model-y" not in str(body["messages"])
    for call in Judgement.objects.filter(judging=j).select_related("run"):
        assert call.run.status == RunStatus.SUCCEEDED and call.prompt_tokens and call.completion_tokens
        kinds = set(Step.objects.filter(run=call.run).values_list("kind", flat=True))
        assert StepKind.LLM_CALL in kinds
        assert call.rationale == "Answer 1 is better."


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_judging_page_streams_its_progress_until_done(asgi_server, celery_worker, llm_server, user, chain,
                                                          client, other_user):
    """Server-Sent Events through uvicorn: a ``progress`` fragment as each judge call is recorded (the
    count of calls done only grows), then ``done`` with every call recorded; another user's is 404."""
    import httpx
    from httpx_sse import connect_sse

    comparison = finished_comparison(user, chain)
    judge = AgentFactory(owner=user, name="slow judge", model="judge-model")
    found = judging.judging_start(comparison=comparison, agent=judge, rubric_name="R",
                                  rubric_text="[[first_delay:6]] [[reply:Fine. Verdict: 1]]")
    client.force_login(user)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    url = f"{asgi_server}/compare/{comparison.pk}/judgings/{found.pk}/events"
    page = client.get(f"/compare/{comparison.pk}/judgings/{found.pk}/").content.decode()
    assert f'sse-connect="/compare/{comparison.pk}/judgings/{found.pk}/events"' in page and "every 1s" not in page
    events = []
    with httpx.Client(timeout=60, cookies=cookies) as http, connect_sse(http, "GET", url) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for event in source.iter_sse():
            events.append(event)
            if event.event == "done":
                break
    progress = [e for e in events if e.event == "progress"]
    done_counts = [int(e.data.split('data-done="')[1].split('"')[0]) for e in progress]
    assert done_counts[0] == 0 and done_counts[-1] == 2 and done_counts == sorted(done_counts)
    assert len(progress) >= 2 and events[-1].event == "done"
    assert 'id="judging-progress"' in progress[-1].data and "2 of 2" in progress[-1].data
    assert Judgement.objects.filter(judging=found, recorded_at__isnull=False).count() == 2
    client.force_login(other_user)
    assert client.get(f"/compare/{comparison.pk}/judgings/{found.pk}/events").status_code == 404
