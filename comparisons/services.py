"""Writes for comparisons: start one, advance a replay, vote, reveal. Keyword-only, transactional;
work for a worker is enqueued on commit (``conversations.services.run_start`` does it for runs).

Replay: a variant's turn *t+1* starts when its run for turn *t* has finished. The worker sends
``conversations.signals.run_finished`` after a run's final state is committed; our receiver
(:mod:`comparisons.receivers`) enqueues :func:`comparisons.tasks.advance_variant`, which calls
:func:`comparisons.advance.variant_advance`. Starting a turn is idempotent: the variant row is locked, an existing
``VariantRun`` for the turn means "already started", and the unique ``(variant, turn)``
constraint backs that up, so a redelivered task or a duplicate signal never starts a turn twice.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connections.models import Connection
from conversations import services as conv
from conversations.models import ACTIVE_STATUSES, Message, Role, Run, Session
from conversations.selectors import get_session_for
from core.errors import Conflict, InvalidInput, NotFound
from core.params import clean_params
from core.text import clean_text
from memory.models import DEFAULT_MEMORY_ID, Agent

from .advance import start_turn, variant_advance
from .models import (
    COLUMN_LETTERS,
    MAX_VARIANTS,
    MIN_VARIANTS,
    Comparison,
    Mode,
    Tag,
    Variant,
    VariantRun,
    Vote,
    VoteChoice,
    VoteRank,
    config_fingerprint,
)
from .selectors import turn_runs, voting_finished

log = logging.getLogger(__name__)

MAX_SAMPLES = 10  # answers per variant and prompt (the voted one and its repeats)
COMPARE_NAME_MARK = " · compare "  # between a variant agent's label and its comparison tag


@dataclass
class VariantSpec:
    """One variant as the user gave it.

    Either ``agent`` (an existing :class:`memory.models.Agent` the user may use, taken as is) or
    the fields below, from which a new agent owned by the user is created. ``params``: model
    parameters, validated by :func:`core.params.clean_params` (temperature, top_p, max_tokens,
    seed, presence/frequency penalty, stop).
    ``memory_window_size``: None keeps all messages, 0 none, N the newest N. ``connection``: the
    model connection the variant runs on (looked up for the owner by the caller; None: the default),
    so variants may put models of different endpoints side by side.
    """

    label: str
    model: str = ""
    connection: Connection | None = None
    system_prompt: str = ""
    params: dict = field(default_factory=dict)
    memory_id: str = DEFAULT_MEMORY_ID
    memory_window_size: int | None = None
    agent: Agent | None = None


# --- configuration ---------------------------------------------------------------------------------

def agent_config(agent: Agent) -> dict:
    """The configuration of an agent that a comparison compares (and fingerprints). An agent on a
    connection other than the default adds ``connection_id`` and ``connection`` (its name), so the
    same model on two endpoints is two configurations (and configurations on the default
    connection keep the fingerprints they had before connections existed)."""
    config = {
        "model": agent.model or settings.ARBOR_MODEL,
        "system_prompt": agent.system_prompt,
        "params": dict(sorted((agent.params or {}).items())),
        "memory_id": agent.memory_id,
        "memory_window_size": agent.memory_window_size,
    }
    connection = agent.connection if agent.connection_id is not None else None
    if connection is not None and not connection.from_environment:
        config.update(connection_id=connection.pk, connection=connection.name)
    return config


def _variant_agent(*, owner, spec: VariantSpec, tag: str) -> Agent:
    """The agent answering a variant: the one given, else the user's agent made by an earlier
    comparison with exactly this configuration (so a configuration is one agent, not one per
    comparison), else a new agent owned by the user."""
    if spec.agent is not None:
        if spec.agent.owner_id not in (None, owner.pk):
            raise NotFound("No such agent.")
        return spec.agent
    connection = spec.connection
    if connection is not None and (connection.is_deleted or connection.owner_id not in (None, owner.pk)):
        raise NotFound("No such connection.")
    memory_id = (spec.memory_id or DEFAULT_MEMORY_ID).strip()
    if not memory_id or len(memory_id) > 100:
        raise InvalidInput("memory_id must be 1 to 100 characters")
    if spec.memory_window_size is not None and spec.memory_window_size < 0:
        raise InvalidInput("memory window size must be 0 or more")
    model = (spec.model or "").strip()
    if len(model) > 200:
        raise InvalidInput("model name is longer than 200 characters")
    if len(spec.system_prompt or "") > settings.ARBOR_MAX_INPUT_CHARS:
        raise InvalidInput("system prompt is too long")
    agent = Agent(
        owner=owner,
        name=f"{spec.label[:80]}{COMPARE_NAME_MARK}{tag}",
        made_by_comparison=True,
        connection=connection,
        model=model,
        system_prompt=spec.system_prompt or "",
        params=clean_params(spec.params),
        memory_id=memory_id,
        memory_window_size=spec.memory_window_size,
    )
    config = agent_config(agent)
    earlier = (
        Variant.objects.filter(comparison__owner=owner, config_key=config_fingerprint(config), agent__owner=owner)
        .select_related("agent").order_by("-pk")[:5]
    )
    for variant in earlier:  # made by a comparison (not the user's own agent) and unchanged since
        if variant.agent.made_by_comparison and agent_config(variant.agent) == config:
            return variant.agent
    agent.save()
    return agent


def variant_agent_for_config(*, owner, label: str, config: dict, tag: str) -> Agent:
    """The agent of a variant given as a configuration (``model``, ``system_prompt``, ``params``,
    ``memory_id``, ``memory_window_size``, as :func:`agent_config` writes it; an imported comparison):
    the owner's agent made by an earlier comparison with exactly this configuration, else a new one.
    A ``connection`` named by the configuration belongs to the installation that wrote it: the agent
    runs on the default connection. Raises InvalidInput for a configuration a variant could not have."""
    window = config.get("memory_window_size")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)):
        raise InvalidInput("memory window size must be a whole number")
    if not isinstance(config.get("params") or {}, dict):
        raise InvalidInput("params must be an object")
    spec = VariantSpec(
        label=label, model=str(config.get("model") or ""), system_prompt=str(config.get("system_prompt") or ""),
        params=config.get("params") or {}, memory_id=str(config.get("memory_id") or DEFAULT_MEMORY_ID),
        memory_window_size=window,
    )
    return _variant_agent(owner=owner, spec=spec, tag=tag)


def clean_tags(raw) -> list[str]:
    """Tags from a comma-separated string or a list: stripped, lower-cased, unique, ≤ 50 chars each."""
    items = raw.split(",") if isinstance(raw, str) else list(raw or [])
    tags: list[str] = []
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        if len(name) > 50:
            raise InvalidInput("a tag is longer than 50 characters")
        name = clean_text(name, field="tag", max_length=50)
        if name not in tags:
            tags.append(name)
    if len(tags) > 20:
        raise InvalidInput("at most 20 tags")
    return tags


# --- starting ------------------------------------------------------------------------------------

def replay_prompts(*, branch_point: Run, source_run: Run) -> list[str]:
    """The user inputs of the runs below ``branch_point`` on the path to ``source_run`` (inclusive),
    in order: one path query. Raises InvalidInput when ``source_run`` is not below ``branch_point``.
    """
    if source_run.depth <= branch_point.depth:
        raise InvalidInput("The branch to replay must continue below the branch point.")
    rows = list(
        Message.objects.on_path_to(source_run)
        .filter(position=0, role=Role.USER)
        .values_list("run_id", "run__depth", "content")
    )
    path_ids = {run_id for run_id, _, _ in rows}
    if branch_point.pk not in path_ids:
        raise InvalidInput("The branch to replay does not pass through the branch point.")
    return [content for _, depth, content in rows if depth > branch_point.depth]


def _clean_labels(variants: list[VariantSpec]) -> list[str]:
    """The variants' labels, stripped. Raises InvalidInput unless there are 2–4 variants with
    non-empty labels of at most 100 characters, different from each other ignoring case."""
    if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        raise InvalidInput(f"A comparison has {MIN_VARIANTS} to {MAX_VARIANTS} variants.")
    labels = [(spec.label or "").strip() for spec in variants]
    if any(not label for label in labels):
        raise InvalidInput("Every variant needs a label.")
    if any(len(label) > 100 for label in labels):
        raise InvalidInput("A label is longer than 100 characters.")
    if len({label.lower() for label in labels}) != len(labels):
        raise InvalidInput("Labels must be different from each other.")
    return [clean_text(label, field="label", max_length=100) for label in labels]  # no control characters


def _prompts(*, session: Session, branch_point: Run, mode: str, prompt: str,
             source_run: Run | None) -> tuple[list[str], Run | None]:
    """``(prompts, source_run)`` of a new comparison: the one ``prompt`` (no source run) for
    ``new_prompt``, the replayed user turns for ``replay``. Raises InvalidInput and NotFound as
    :func:`comparison_start` describes."""
    if mode == Mode.NEW_PROMPT:
        return [conv.clean_input(prompt)], None
    if mode != Mode.REPLAY:
        raise InvalidInput("mode must be new_prompt or replay")
    if source_run is None:
        raise InvalidInput("Choose the branch whose turns to replay.")
    if not session.can_branch_from(source_run):
        raise NotFound("The branch to replay is not part of this session.")
    prompts = replay_prompts(branch_point=branch_point, source_run=source_run)
    if not prompts:
        raise InvalidInput("That branch has no user turns below the branch point.")
    if len(prompts) > settings.ARBOR_COMPARE_MAX_REPLAY_TURNS:
        raise InvalidInput(f"At most {settings.ARBOR_COMPARE_MAX_REPLAY_TURNS} turns can be replayed.")
    return prompts, source_run


def _check_start(*, owner, session: Session, branch_point: Run) -> None:
    """NotFound unless ``session`` is ``owner``'s and ``branch_point`` in its tree; Conflict when the
    session is deleted or the branch point has not finished."""
    if session.owner_id != owner.pk:
        raise NotFound("No such session.")
    if session.is_deleted:
        raise Conflict("This session is deleted.")
    if not session.can_branch_from(branch_point):
        raise NotFound("That run is not part of this session.")
    if branch_point.status in ACTIVE_STATUSES:
        raise Conflict("The branch point has not finished yet; compare from it once it has.")


@transaction.atomic
def comparison_start(
    *,
    owner,
    session: Session,
    branch_point: Run,
    variants: list[VariantSpec],
    mode: str = Mode.NEW_PROMPT,
    prompt: str = "",
    source_run: Run | None = None,
    blind: bool = False,
    tags=(),
    rng: random.Random | None = None,
    samples: int = 1,
) -> Comparison:
    """Start a comparison: each variant's first run is a child of ``branch_point``, queued now and
    run in parallel by the workers; in replay mode later turns follow as each run finishes.

    ``samples`` (1–10): answers per variant and prompt; the repeats are siblings of the voted run
    with the seed raised by 1 … samples − 1 (for the spread of answers; see
    :func:`comparisons.trends.repeat_stats`).

    ``mode="new_prompt"`` sends ``prompt``; ``mode="replay"`` replays the user turns below
    ``branch_point`` on the branch ending at ``source_run``. Blind comparisons get a shuffled
    column order (``rng`` for tests). Writes the comparison, its variants (and one agent each unless
    an existing agent is given), and per variant one run, its input message and a VariantRun.

    Raises InvalidInput (2–4 variants, unique non-empty labels, empty prompt, bad parameters, a
    source branch not below the branch point, too many turns), NotFound (the session or run is
    not the owner's, or the run is not in the session's tree) and Conflict (the branch point has
    not finished, or the session is deleted).
    """
    _check_start(owner=owner, session=session, branch_point=branch_point)
    labels = _clean_labels(variants)
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
        raise InvalidInput(f"samples must be a whole number from 1 to {MAX_SAMPLES}")
    prompts, source_run = _prompts(session=session, branch_point=branch_point, mode=mode, prompt=prompt,
                                   source_run=source_run)
    tag_names = clean_tags(tags)

    order = list(range(len(variants)))
    if blind:
        (rng or random.SystemRandom()).shuffle(order)
    comparison = Comparison.objects.create(
        owner=owner, session=session, branch_point=branch_point, mode=mode, source_run=source_run,
        prompts=prompts, blind=blind, column_order=order, samples=samples,
    )
    if tag_names:
        comparison.tags.set([Tag.objects.get_or_create(owner=owner, name=name)[0] for name in tag_names])
    short = str(comparison.pk)[:8]
    for position, (spec, label) in enumerate(zip(variants, labels, strict=True)):
        spec.label = label
        agent = _variant_agent(owner=owner, spec=spec, tag=short)
        config = agent_config(agent)
        variant = Variant.objects.create(
            comparison=comparison, position=position, label=label, agent=agent, config=config,
            config_key=config_fingerprint(config),
        )
        start_turn(variant=variant, turn=0, parent=branch_point)
    return comparison


@transaction.atomic
def comparison_from_runs(*, owner, session: Session, runs: list[Run], blind: bool = True,
                         rng: random.Random | None = None) -> Comparison:
    """A comparison of sibling runs that already answered one prompt (a fan-out of the chat): no
    run is started; each run becomes a variant's turn 1 (its agent, or one made for its model and
    connection, as :func:`comparison_start` makes them), blind by default with a shuffled column
    order, so voting and results are the comparisons' own.

    Raises InvalidInput (not 2–4 runs, not siblings with one input), NotFound (a run outside the
    session's tree), Conflict (a run unfinished, already in a comparison, or a root: a comparison
    needs the turn above)."""
    if not MIN_VARIANTS <= len(runs) <= MAX_VARIANTS:
        raise InvalidInput(f"Compare {MIN_VARIANTS} to {MAX_VARIANTS} answers.")
    if any(not session.can_branch_from(run) for run in runs):
        raise NotFound("That run is not part of this session.")
    parent = runs[0].parent_run
    if parent is None or any(run.parent_run_id != parent.pk for run in runs):
        raise Conflict("Only answers to the same turn below an earlier turn can be compared.")
    if any(run.status in ACTIVE_STATUSES for run in runs):
        raise Conflict("Wait for every answer to finish, then compare them.")
    if VariantRun.objects.filter(run__in=runs).exists():
        raise Conflict("One of these answers is already part of a comparison.")
    prompts = {conv.run_input(run) for run in runs}
    if len(prompts) != 1:
        raise InvalidInput("These answers do not answer the same input.")
    order = list(range(len(runs)))
    if blind:
        (rng or random.SystemRandom()).shuffle(order)
    comparison = Comparison.objects.create(owner=owner, session=session, branch_point=parent,
                                           mode=Mode.NEW_PROMPT, prompts=[prompts.pop()], blind=blind,
                                           column_order=order)
    short = str(comparison.pk)[:8]
    for position, run in enumerate(runs):
        spec = VariantSpec(label=f"{run.model_label}"[:90] + f" #{position + 1}", model=run.model,
                           connection=run.connection, agent=run.agent)
        agent = _variant_agent(owner=owner, spec=spec, tag=short)
        config = agent_config(agent)
        variant = Variant.objects.create(comparison=comparison, position=position, label=spec.label, agent=agent,
                                         config=config, config_key=config_fingerprint(config))
        VariantRun.objects.create(variant=variant, turn=0, run=run)
    return comparison


def comparison_resume(*, comparison: Comparison) -> list[Run]:
    """Start every replayed turn that should be running but is not (a lost task, say): for each
    variant, advance after its latest finished run. Returns the runs started."""
    started = []
    for variant in comparison.variants.all():
        last = VariantRun.objects.filter(variant=variant).select_related("run").order_by("-turn").first()
        if last is not None and last.run.status not in ACTIVE_STATUSES:
            run = variant_advance(variant_id=variant.pk, finished_run_id=last.run_id)
            if run is not None:
                started.append(run)
    return started


def branch_open(*, comparison: Comparison, column: int) -> tuple[Session, Run]:
    """Continue a variant's branch: make the last run of column ``column`` (0-based, in the columns
    shown) its session's active run. Returns ``(session, run)``.

    Raises NotFound (no such column, no run yet, the session is deleted) and Conflict (a blind
    comparison before its reveal: the branch would tell which variant it is).
    """
    if not isinstance(column, int) or not 0 <= column < len(comparison.column_order):
        raise NotFound("No such column.")
    if not comparison.labels_visible:
        raise Conflict("Vote first: opening the branch would show which variant it is.")
    last = (
        VariantRun.objects.filter(variant__comparison=comparison, variant__position=comparison.column_order[column])
        .select_related("run").order_by("-turn").first()
    )
    if last is None:
        raise NotFound("This variant has no run yet.")
    session = get_session_for(comparison.owner_id, comparison.session_id)
    conv.session_set_active(session=session, run=last.run)
    return session, last.run


# --- voting --------------------------------------------------------------------------------------

@transaction.atomic
def vote_cast(
    *,
    comparison: Comparison,
    turn: int,
    choice: str,
    ranking: dict[int, int] | None = None,
    note: str = "",
) -> Vote:
    """Record the vote for one prompt (``turn``, 0-based) of a comparison.

    ``choice`` is given in terms of the columns shown: ``a_better`` (the first column), ``b_better``,
    ``tie`` or ``both_bad`` for two variants; ``ranking`` for more, with ``ranking`` mapping each
    column index (0-based) to a rank (1 best; equal ranks tie). Every variant's run for the turn must
    have finished. The vote gets one VoteRank per variant, tied to that variant's run. When every
    prompt has a vote a blind comparison is revealed.

    Raises InvalidInput (bad turn, choice, ranking or note) and Conflict (already voted, runs not
    finished).
    """
    comparison = Comparison.objects.select_for_update().get(pk=comparison.pk)
    if not isinstance(turn, int) or not 0 <= turn < comparison.turn_count:
        raise InvalidInput("No such prompt in this comparison.")
    note = clean_text(note or "", field="note", max_length=2000, required=False, multiline=True)
    runs = turn_runs(comparison, turn)
    n = len(comparison.column_order)
    if len(runs) < n or any(run.status in ACTIVE_STATUSES for run in runs.values()):
        raise Conflict("Vote once every variant has answered this prompt.")
    if Vote.objects.filter(comparison=comparison, turn=turn).exists():
        raise Conflict("This prompt already has a vote.")
    columns = comparison.column_order  # column index → variant position
    if n == 2:
        ranks_by_column = {
            VoteChoice.A_BETTER: {0: 1, 1: 2},
            VoteChoice.B_BETTER: {0: 2, 1: 1},
            VoteChoice.TIE: {0: 1, 1: 1},
            VoteChoice.BOTH_BAD: {0: 1, 1: 1},
        }.get(choice)
        if ranks_by_column is None:
            raise InvalidInput("choice must be a_better, b_better, tie or both_bad")
    else:
        if choice == VoteChoice.BOTH_BAD:
            ranks_by_column = dict.fromkeys(range(n), 1)
        elif choice == VoteChoice.RANKING:
            ranks_by_column = _clean_ranking(ranking, n)
        else:
            raise InvalidInput("With more than two variants, rank them (or say they are all bad).")
    vote = Vote.objects.create(comparison=comparison, turn=turn, choice=choice, note=note)
    variants = {v.position: v for v in comparison.variants.all()}
    VoteRank.objects.bulk_create([
        VoteRank(vote=vote, variant=variants[columns[col]], run=runs[columns[col]], rank=rank)
        for col, rank in ranks_by_column.items()
    ])
    if comparison.blind and comparison.revealed_at is None and voting_finished(comparison):
        comparison.revealed_at = timezone.now()
        comparison.save(update_fields=["revealed_at"])
    return vote


@transaction.atomic
def comparison_reveal(*, comparison: Comparison) -> Comparison:
    """Reveal a blind comparison's labels once voting is over (see :func:`voting_finished`): for
    when a variant stopped early, so some prompts can never be voted on.

    Raises Conflict while a run is still to come or a votable prompt has no vote.
    """
    comparison = Comparison.objects.select_for_update().get(pk=comparison.pk)
    if not comparison.blind or comparison.revealed_at is not None:
        return comparison
    if not voting_finished(comparison):
        raise Conflict("Vote on every prompt whose answers are all in first.")
    comparison.revealed_at = timezone.now()
    comparison.save(update_fields=["revealed_at"])
    return comparison


def _clean_ranking(ranking, n: int) -> dict[int, int]:
    if not isinstance(ranking, dict) or set(ranking) != set(range(n)):
        raise InvalidInput(f"Give every one of the {n} responses a rank.")
    out = {}
    for col, rank in ranking.items():
        try:
            rank = int(rank)
        except (TypeError, ValueError):
            raise InvalidInput("Ranks are whole numbers.") from None
        if not 1 <= rank <= n:
            raise InvalidInput(f"Ranks go from 1 (best) to {n}.")
        out[col] = rank
    return out


def column_letter(index: int) -> str:
    return COLUMN_LETTERS[index]


# --- suite cases -------------------------------------------------------------------------------------

def suite_case_start(*, owner, session: Session, prompts: list[str], agents: list[Agent], blind: bool = True,
                     tags=(), suite_run=None, case=None, rng: random.Random | None = None) -> Comparison:
    """A comparison that replays ``prompts`` from the start of a conversation: each agent's first
    run is a root run of ``session`` (no branch point), later turns follow as in a replay
    (:func:`comparisons.advance.variant_advance`). Variants are the agents as they are, labelled by
    their names, the first the baseline. Call inside a transaction (the suite run's).

    Raises InvalidInput (2–4 agents with different names, no prompt, too many) and NotFound (an
    agent the owner may not use)."""
    if not prompts:
        raise InvalidInput("A case needs at least one user turn.")
    if len(prompts) > settings.ARBOR_COMPARE_MAX_REPLAY_TURNS:
        raise InvalidInput(f"At most {settings.ARBOR_COMPARE_MAX_REPLAY_TURNS} turns can be replayed.")
    specs = [VariantSpec(label=agent.name[:100], agent=agent) for agent in agents]
    labels = _clean_labels(specs)
    order = list(range(len(specs)))
    if blind:
        (rng or random.SystemRandom()).shuffle(order)
    comparison = Comparison.objects.create(
        owner=owner, session=session, branch_point=None, mode=Mode.REPLAY,
        prompts=[conv.clean_input(p) for p in prompts], blind=blind, column_order=order, suite_run=suite_run,
        suite_case=case,
    )
    tag_names = clean_tags(tags)
    if tag_names:
        comparison.tags.set([Tag.objects.get_or_create(owner=owner, name=name)[0] for name in tag_names])
    for position, (spec, label) in enumerate(zip(specs, labels, strict=True)):
        agent = _variant_agent(owner=owner, spec=spec, tag="")
        config = agent_config(agent)
        variant = Variant.objects.create(comparison=comparison, position=position, label=label, agent=agent,
                                         config=config, config_key=config_fingerprint(config))
        start_turn(variant=variant, turn=0, parent=None)
    return comparison
