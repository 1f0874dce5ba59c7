"""Starting comparisons, replaying turns and voting (services, without a worker: runs stay queued
unless a test finishes them with ``finish_run``)."""

from __future__ import annotations

import random

import pytest

from comparisons import advance, services
from comparisons.models import Comparison, Mode, Variant, VariantRun, Vote, VoteRank
from comparisons.services import VariantSpec
from conversations.models import Run, RunStatus
from core.errors import Conflict, InvalidInput, NotFound
from memory.models import Agent
from tests.comparisons.conftest import finish_run
from tests.support.factories import AgentFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db


def two_specs():
    return [
        VariantSpec(label="Terse", model="model-a", system_prompt="Be terse.", params={"temperature": 0.2}),
        VariantSpec(label="Chatty", model="model-b", system_prompt="Be chatty.", params={"temperature": 1.1, "seed": 7},
                    memory_id="chatty", memory_window_size=4),
    ]


def test_new_prompt_variants_branch_under_the_branch_point(user, chain):
    """Each variant's run is a child of the branch point, in the same session, with the prompt as input
    and the variant's agent (model, system prompt, params, memory settings) answering."""
    session, runs = chain
    branch_point = runs[2]
    comparison = services.comparison_start(owner=user, session=session, branch_point=branch_point,
                                           variants=two_specs(), prompt="Which is better?")
    variants = list(comparison.variants.order_by("position"))
    assert [v.label for v in variants] == ["Terse", "Chatty"]
    for variant, spec in zip(variants, two_specs(), strict=True):
        vr = VariantRun.objects.get(variant=variant)
        run = vr.run
        assert vr.turn == 0
        assert run.parent_run_id == branch_point.pk and run.depth == branch_point.depth + 1
        assert run.session_id == session.pk and run.status == RunStatus.QUEUED
        assert run.messages.get(position=0).content == "Which is better?"
        assert run.agent_id == variant.agent_id and run.model == spec.model
        assert run.params["temperature"] == spec.params["temperature"]
        agent = Agent.objects.get(pk=variant.agent_id)
        assert agent.owner_id == user.pk and agent.system_prompt == spec.system_prompt
        assert agent.memory_id == spec.memory_id and agent.memory_window_size == spec.memory_window_size
        assert variant.config["model"] == spec.model and variant.config["system_prompt"] == spec.system_prompt
    assert Run.objects.children_of(branch_point).count() == 1 + 2  # the original next turn + two variants
    assert variants[0].config_key != variants[1].config_key
    assert comparison.prompts == ["Which is better?"] and comparison.column_order == [0, 1]


def test_four_variants_and_an_existing_agent(user, chain):
    session, runs = chain
    agent = AgentFactory(owner=user, name="house style", model="house-model", system_prompt="House.")
    specs = [VariantSpec(label=f"V{i}", model=f"m{i}") for i in range(3)] + [VariantSpec(label="House", agent=agent)]
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[4], variants=specs,
                                           prompt="go", blind=True, rng=random.Random(3))
    assert comparison.variants.count() == 4
    assert sorted(comparison.column_order) == [0, 1, 2, 3]
    house = comparison.variants.get(label="House")
    assert house.agent_id == agent.pk and house.variant_runs.get().run.model == "house-model"
    assert set(Run.objects.children_of(runs[4]).values_list("model", flat=True)) == {"m0", "m1", "m2", "house-model"}


def test_blind_shuffles_the_columns(user, chain):
    """Blind comparisons get a shuffled column order (seeded here); others keep the given order."""
    session, runs = chain
    orders = set()
    for seed in range(8):
        specs = [VariantSpec(label=f"L{i}") for i in range(4)]
        c = services.comparison_start(owner=user, session=session, branch_point=runs[0], variants=specs,
                                      prompt="p", blind=True, rng=random.Random(seed))
        orders.add(tuple(c.column_order))
    assert len(orders) > 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"variants": [VariantSpec(label="only")]}, InvalidInput),
        ({"variants": [VariantSpec(label=f"v{i}") for i in range(5)]}, InvalidInput),
        ({"variants": [VariantSpec(label="same"), VariantSpec(label="Same")]}, InvalidInput),
        ({"variants": [VariantSpec(label="a"), VariantSpec(label="  ")]}, InvalidInput),
        ({"prompt": "   "}, InvalidInput),
        ({"variants": [VariantSpec(label="a", params={"temperature": 9}), VariantSpec(label="b")]}, InvalidInput),
        ({"variants": [VariantSpec(label="a", params={"logit_bias": 1}), VariantSpec(label="b")]}, InvalidInput),
        ({"variants": [VariantSpec(label="a", memory_window_size=-1), VariantSpec(label="b")]}, InvalidInput),
        ({"mode": "sideways"}, InvalidInput),
        ({"mode": Mode.REPLAY}, InvalidInput),
    ],
)
def test_bad_input_changes_nothing(user, chain, kwargs, error):
    session, runs = chain
    args = {"owner": user, "session": session, "branch_point": runs[1], "prompt": "hello",
            "variants": [VariantSpec(label="a"), VariantSpec(label="b")], **kwargs}
    before = (Run.objects.count(), Agent.objects.count())
    with pytest.raises(error):
        services.comparison_start(**args)
    assert Comparison.objects.count() == 0
    assert (Run.objects.count(), Agent.objects.count()) == before


def test_branch_point_must_be_finished_and_in_the_session(user, other_user, chain):
    session, runs = chain
    specs = [VariantSpec(label="a"), VariantSpec(label="b")]
    running = RunFactory(session=session, parent_run=runs[4], status=RunStatus.RUNNING)
    with pytest.raises(Conflict):
        services.comparison_start(owner=user, session=session, branch_point=running, variants=specs, prompt="x")
    elsewhere = RunFactory(session=SessionFactory(owner=user))
    with pytest.raises(NotFound):
        services.comparison_start(owner=user, session=session, branch_point=elsewhere, variants=specs, prompt="x")
    with pytest.raises(NotFound):
        services.comparison_start(owner=other_user, session=session, branch_point=runs[1], variants=specs, prompt="x")
    assert Comparison.objects.count() == 0


def test_replay_takes_the_user_turns_below_the_branch_point(user, chain):
    """Replay mode sends exactly the source branch's user turns after the branch point, in order;
    only the first turn starts now."""
    session, runs = chain
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[1], variants=two_specs(),
                                           mode=Mode.REPLAY, source_run=runs[4])
    source_inputs = [r.messages.get(position=0).content for r in runs[2:]]
    assert comparison.prompts == source_inputs == ["question 2", "question 3", "question 4"]
    assert VariantRun.objects.filter(variant__comparison=comparison).count() == 2
    for vr in VariantRun.objects.filter(variant__comparison=comparison):
        assert vr.turn == 0 and vr.run.parent_run_id == runs[1].pk
        assert vr.run.messages.get(position=0).content == "question 2"


def test_replay_source_must_continue_below_the_branch_point(user, chain):
    session, runs = chain
    side = RunFactory(session=session, parent_run=runs[0], turn=("side", "a"))
    for source in (runs[1], side):  # not below runs[2]
        with pytest.raises(InvalidInput):
            services.comparison_start(owner=user, session=session, branch_point=runs[2], variants=two_specs(),
                                      mode=Mode.REPLAY, source_run=source)
    assert Comparison.objects.count() == 0


def test_variant_advance_chains_turns_once(user, chain):
    """After turn t finishes, turn t+1 starts as its child with prompts[t+1]; calling again (a
    redelivered task or a duplicate signal) starts nothing more."""
    session, runs = chain
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[1], variants=two_specs(),
                                           mode=Mode.REPLAY, source_run=runs[4])
    variant = comparison.variants.get(position=0)
    first = finish_run(variant.variant_runs.get(turn=0).run)
    assert advance.variant_advance(variant_id=variant.pk, finished_run_id=first.pk) is not None
    assert advance.variant_advance(variant_id=variant.pk, finished_run_id=first.pk) is None
    second = variant.variant_runs.get(turn=1).run
    assert second.parent_run_id == first.pk and second.messages.get(position=0).content == "question 3"
    assert second.agent_id == variant.agent_id and second.model == "model-a"
    finish_run(second)
    third = advance.variant_advance(variant_id=variant.pk, finished_run_id=second.pk)
    assert third.messages.get(position=0).content == "question 4"
    finish_run(third)
    assert advance.variant_advance(variant_id=variant.pk, finished_run_id=third.pk) is None  # no turn 4
    assert variant.variant_runs.count() == 3
    # The other variant has not moved: its turn 0 is still queued.
    other = comparison.variants.get(position=1)
    assert advance.variant_advance(variant_id=other.pk, finished_run_id=other.variant_runs.get().run_id) is None
    assert other.variant_runs.count() == 1


def test_comparison_runs_never_change_the_sessions_shown_branch(user, chain):
    """Issue 16: starting comparisons (two in a row, one of them a replay) and advancing a replayed
    variant leave the session's active run where the user left it; the variants' runs are in the
    tree; "Continue this branch" (session_set_active) is the explicit way to open one."""
    session, runs = chain
    session.refresh_from_db()
    shown = session.active_run_id
    assert shown == runs[4].pk
    services.comparison_start(owner=user, session=session, branch_point=runs[3], variants=two_specs(), prompt="Hi?")
    replay = services.comparison_start(owner=user, session=session, branch_point=runs[1], variants=two_specs(),
                                       mode=Mode.REPLAY, source_run=runs[4])
    session.refresh_from_db()
    assert session.active_run_id == shown
    variant = replay.variants.get(position=0)
    first = finish_run(variant.variant_runs.get(turn=0).run)
    second = advance.variant_advance(variant_id=variant.pk, finished_run_id=first.pk)
    assert second is not None and second.session_id == session.pk
    session.refresh_from_db()
    assert session.active_run_id == shown
    assert Run.objects.filter(session=session).count() == 5 + 2 + 2 + 1


def test_a_failed_turn_stops_the_variant(user, chain):
    session, runs = chain
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[1], variants=two_specs(),
                                           mode=Mode.REPLAY, source_run=runs[4])
    variant = comparison.variants.get(position=1)
    failed = finish_run(variant.variant_runs.get().run, status=RunStatus.FAILED)
    assert advance.variant_advance(variant_id=variant.pk, finished_run_id=failed.pk) is None
    variant.refresh_from_db()
    assert "failed" in variant.stopped_reason and variant.variant_runs.count() == 1


def test_resume_starts_turns_whose_task_was_lost(user, chain):
    session, runs = chain
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[1], variants=two_specs(),
                                           mode=Mode.REPLAY, source_run=runs[4])
    for vr in VariantRun.objects.filter(variant__comparison=comparison):
        finish_run(vr.run)
    started = services.comparison_resume(comparison=comparison)
    assert len(started) == 2 and all(r.messages.get(position=0).content == "question 3" for r in started)
    assert services.comparison_resume(comparison=comparison) == []  # turn 1 is queued now


def _finished_comparison(user, chain, *, n=2, blind=True, seed=1, mode=Mode.NEW_PROMPT):
    session, runs = chain
    specs = [VariantSpec(label=f"label-{i}", model=f"model-{i}") for i in range(n)]
    kwargs = {"mode": mode, "source_run": runs[4]} if mode == Mode.REPLAY else {"prompt": "compare this"}
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[1], variants=specs,
                                           blind=blind, rng=random.Random(seed), **kwargs)
    for vr in VariantRun.objects.filter(variant__comparison=comparison):
        finish_run(vr.run, text=f"answer of {vr.variant.label}")
    return comparison


def test_vote_is_tied_to_the_runs_of_the_columns_shown(user, chain):
    """"A is better" means the left column: its variant's run gets rank 1, whatever the shuffle."""
    comparison = _finished_comparison(user, chain, seed=5)
    left_position = comparison.column_order[0]
    vote = services.vote_cast(comparison=comparison, turn=0, choice="a_better", note="crisper")
    ranks = {r.variant.position: r for r in VoteRank.objects.filter(vote=vote).select_related("variant")}
    assert ranks[left_position].rank == 1 and ranks[1 - left_position].rank == 2
    for rank in ranks.values():
        assert rank.run_id == VariantRun.objects.get(variant=rank.variant, turn=0).run_id
    assert vote.note == "crisper" and vote.choice == "a_better"
    comparison.refresh_from_db()
    assert comparison.revealed_at is not None  # the only prompt has a vote


def test_vote_errors(user, chain):
    comparison = _finished_comparison(user, chain)
    with pytest.raises(InvalidInput):
        services.vote_cast(comparison=comparison, turn=0, choice="ranking")
    with pytest.raises(InvalidInput):
        services.vote_cast(comparison=comparison, turn=3, choice="tie")
    services.vote_cast(comparison=comparison, turn=0, choice="tie")
    with pytest.raises(Conflict):
        services.vote_cast(comparison=comparison, turn=0, choice="a_better")
    assert Vote.objects.count() == 1


def test_vote_waits_for_every_answer(user, chain):
    session, runs = chain
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[1], variants=two_specs(),
                                           prompt="p", blind=True)
    finish_run(comparison.variants.get(position=0).variant_runs.get().run)
    with pytest.raises(Conflict):
        services.vote_cast(comparison=comparison, turn=0, choice="tie")
    assert Vote.objects.count() == 0


def test_ranking_with_three_variants_and_reveal_after_every_turn(user, chain):
    """With more than two variants the vote is a ranking (ties allowed); a blind replay is revealed
    only once every prompt has a vote."""
    comparison = _finished_comparison(user, chain, n=3, mode=Mode.REPLAY)
    # Only turn 0 ran in this test (no worker); start and finish the later turns by hand.
    for turn in (1, 2):
        for variant in comparison.variants.all():
            previous = variant.variant_runs.get(turn=turn - 1).run
            finish_run(advance.variant_advance(variant_id=variant.pk, finished_run_id=previous.pk))
    with pytest.raises(InvalidInput):
        services.vote_cast(comparison=comparison, turn=0, choice="ranking", ranking={0: 1, 1: 2})
    with pytest.raises(InvalidInput):
        services.vote_cast(comparison=comparison, turn=0, choice="ranking", ranking={0: 1, 1: 2, 2: 9})
    services.vote_cast(comparison=comparison, turn=0, choice="ranking", ranking={0: 2, 1: 1, 2: 2})
    comparison.refresh_from_db()
    assert comparison.revealed_at is None
    ranks = {r.variant.position: r.rank for r in VoteRank.objects.filter(vote__turn=0).select_related("variant")}
    assert ranks == {comparison.column_order[0]: 2, comparison.column_order[1]: 1, comparison.column_order[2]: 2}
    services.vote_cast(comparison=comparison, turn=1, choice="both_bad")
    services.vote_cast(comparison=comparison, turn=2, choice="ranking", ranking={0: 1, 1: 2, 2: 3})
    comparison.refresh_from_db()
    assert comparison.revealed_at is not None
    turn2 = Vote.objects.get(comparison=comparison, turn=2)
    for rank in turn2.ranks.all():
        assert rank.run.comparison_turn.turn == 2 and rank.run.comparison_turn.variant_id == rank.variant_id


def test_tags_are_cleaned_and_shared(user, chain):
    session, runs = chain
    c1 = services.comparison_start(owner=user, session=session, branch_point=runs[0], variants=two_specs(),
                                   prompt="p", tags=" Models, prompts ,models,")
    c2 = services.comparison_start(owner=user, session=session, branch_point=runs[0],
                                   variants=[VariantSpec(label="x"), VariantSpec(label="y")], prompt="p",
                                   tags=["models"])
    assert sorted(c1.tags.values_list("name", flat=True)) == ["models", "prompts"]
    assert c1.tags.get(name="models") == c2.tags.get()
    assert Variant.objects.filter(comparison=c2).count() == 2


def test_a_configuration_is_one_agent_across_comparisons(user, chain):
    """Comparing the same configuration again reuses the agent an earlier comparison made; a
    different configuration, or an agent edited since, gets a new one."""
    session, runs = chain
    first = services.comparison_start(owner=user, session=session, branch_point=runs[0], variants=two_specs(),
                                      prompt="p")
    again = services.comparison_start(owner=user, session=session, branch_point=runs[1], variants=two_specs(),
                                      prompt="q")
    assert [v.agent_id for v in again.variants.all()] == [v.agent_id for v in first.variants.all()]
    assert [v.config_key for v in again.variants.all()] == [v.config_key for v in first.variants.all()]
    Agent.objects.filter(pk=first.variants.get(position=0).agent_id).update(system_prompt="edited")
    changed = two_specs()
    changed[1].params = {"temperature": 1.2, "seed": 7}
    third = services.comparison_start(owner=user, session=session, branch_point=runs[2], variants=changed, prompt="r")
    agents = [v.agent_id for v in third.variants.all()]
    assert agents[0] != first.variants.get(position=0).agent_id  # the old one was edited
    assert agents[1] != first.variants.get(position=1).agent_id  # a different temperature
    assert Agent.objects.filter(owner=user).count() == 4


def test_reveal_when_a_variant_stopped_early(user, chain):
    """A blind replay where one variant failed at turn 1: turns 2–3 can never be voted on, so the
    labels can be revealed once turn 1 has its vote (not before, and not while runs are to come)."""
    session, runs = chain
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[1], variants=two_specs(),
                                           mode=Mode.REPLAY, source_run=runs[4], blind=True)
    ok, bad = comparison.variants.order_by("position")
    with pytest.raises(Conflict):
        services.comparison_reveal(comparison=comparison)  # runs are queued
    finish_run(bad.variant_runs.get().run, status=RunStatus.FAILED)
    advance.variant_advance(variant_id=bad.pk, finished_run_id=bad.variant_runs.get().run_id)
    first = finish_run(ok.variant_runs.get().run)
    with pytest.raises(Conflict):
        services.comparison_reveal(comparison=comparison)  # turn 1 has no vote yet
    services.vote_cast(comparison=comparison, turn=0, choice="both_bad")
    comparison.refresh_from_db()
    assert comparison.revealed_at is None  # the good variant's later turns are still to come
    run = advance.variant_advance(variant_id=ok.pk, finished_run_id=first.pk)
    run = finish_run(run)
    finish_run(advance.variant_advance(variant_id=ok.pk, finished_run_id=run.pk))
    assert services.comparison_reveal(comparison=comparison).revealed_at is not None
