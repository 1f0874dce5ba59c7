"""Branches that come back together: fan-out (several sibling runs of one turn at once), fuse
(an agent writes one answer from several siblings) and merge (a turn carrying another branch's
turns or a digest of them, with its provenance).

Every action runs in one transaction and is audited (``merge.fan_out``, ``merge.fuse``,
``merge.digest_draft``, ``merge.create``, ``merge.undo``); bad input raises InvalidInput before
anything is written. Runs start through :func:`conversations.services.run_start`, so their
execution, streaming and audit are those of any other run. No model call happens in a request:
a fused answer and a digest draft are runs, executed by the engine in a worker and audited with
their exact context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.log import audited
from branches.selectors import MERGE_FINISH
from branches.services import prune_subtree
from connections.selectors import base_url_for
from conversations.models import ACTIVE_STATUSES, Message, Prune, Run, RunStatus, Session
from conversations.selectors import undo_cutoff
from conversations.services import run_input, run_start, session_create, session_rewind
from core.errors import Conflict, InvalidInput, NotFound
from core.text import clean_text
from core.tokens import counter_for, overhead_for

from . import selectors
from .models import DigestDraft, FanOut, Kind, Mode, Provenance, ProvenanceSource

MIN_VARIANTS, MAX_VARIANTS = 2, 4
MAX_FUSE_SOURCES = 8
DEFAULT_FUSE_INSTRUCTION = ("Combine the best of these answers into one answer to the question. Keep what is "
                            "correct and useful in each, resolve disagreements, and do not mention the answers.")
DIGEST_INSTRUCTION = ("Write a digest of what this branch of the conversation concluded: the findings, decisions "
                      "and open questions, in at most 200 words. Write only the digest.")
DIGEST_MAX_TOKENS = 400


# --- fan-out ----------------------------------------------------------------------------------------

@dataclass
class Variant:
    """One variant of a fan-out: who answers (any of the three may be None: the default)."""

    model: str | None = None
    agent: object = None
    connection: object = None
    has_connection: bool = False


def _fan_out_details(kwargs: dict, fan_out: FanOut) -> dict:
    return {"session_id": str(fan_out.session_id), "runs": [str(r.pk) for r in fan_out.started]}


@transaction.atomic
@audited("merge.fan_out", details=_fan_out_details)
def fan_out(*, session: Session, input: str, variants: list[Variant], parent=...) -> FanOut:
    """Start one sibling run of the same turn per variant (2–4), all below the same parent: the
    session's active run when ``parent`` is omitted, None for new roots, else that run. The first
    variant's run becomes the shown branch; the others are its siblings. Returns the :class:`FanOut`
    with ``started`` (the runs, in variant order).

    Raises InvalidInput (not 2–4 variants, or as :func:`run_start`), NotFound and Conflict as
    :func:`run_start`."""
    if not isinstance(variants, list) or not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        raise InvalidInput(f"variants must list {MIN_VARIANTS} to {MAX_VARIANTS} models, agents or connections.")
    started: list[Run] = []
    for index, variant in enumerate(variants):
        kwargs = {"model": variant.model, "agent": variant.agent, "activate": index == 0}
        if variant.has_connection:
            kwargs["connection"] = variant.connection
        if index == 0:
            if parent is not ...:
                kwargs["parent"] = parent
        else:
            kwargs["parent"] = started[0].parent_run
        started.append(run_start(session=session, input=input, **kwargs))
    group = FanOut.objects.create(session=session)
    group.runs.add(*started)
    Message.objects.filter(run__in=started, position=0).update(metadata={"fan_out": str(group.pk)})
    group.started = started
    return group


# --- fuse -------------------------------------------------------------------------------------------

def _fuse_sources(run: Run, source_ids: list) -> list[Run]:
    """The sibling runs ``source_ids`` of ``run`` (its siblings or itself), in the order given.
    Raises InvalidInput (count, duplicates), NotFound (not a sibling) and Conflict (not succeeded)."""
    if not isinstance(source_ids, list) or not 2 <= len(source_ids) <= MAX_FUSE_SOURCES:
        raise InvalidInput(f"source_run_ids must list 2 to {MAX_FUSE_SOURCES} sibling runs.")
    if len(set(source_ids)) != len(source_ids):
        raise InvalidInput("source_run_ids lists a run twice.")
    found = {r.pk: r for r in Run.objects.sibling_of(run).filter(pk__in=source_ids).select_related("connection")}
    missing = [str(pk) for pk in source_ids if pk not in found]
    if missing:
        raise NotFound(f"Not a sibling of this run: {', '.join(missing)[:200]}.")
    sources = [found[pk] for pk in source_ids]
    unfinished = [str(r.pk) for r in sources if r.status != RunStatus.SUCCEEDED]
    if unfinished:
        raise Conflict(f"Only answers that succeeded can be fused; not yet: {', '.join(unfinished)[:200]}.")
    return sources


def fuse_prompt(*, question: str, answers: list[tuple[str, str]], instruction: str) -> str:
    """The fused run's input: the instruction, the question, then each answer under its
    ``connection · model`` label (``answers``: ``[(label, text)]``)."""
    blocks = [instruction.strip(), f"Question:\n{question}"]
    blocks += [f"Answer {index} ({label}):\n{text}" for index, (label, text) in enumerate(answers, start=1)]
    return "\n\n".join(blocks)


def _answers(sources: list[Run]) -> list[tuple[str, str]]:
    """``[(label, answer)]`` of the sources (their last assistant message each; one query)."""
    texts = selectors.answers_of(sources)
    return [(run.model_label, texts.get(run.pk, "")) for run in sources]


@transaction.atomic
@audited("merge.fuse", details=lambda kwargs, run: {"sources": [str(pk) for pk in kwargs["source_ids"]]})
def fuse(*, session: Session, run: Run, source_ids: list, agent=None, instruction: str | None = None) -> Run:
    """A new sibling of ``run`` whose answer ``agent`` (default: the session's, as for any run)
    writes from the answers of ``source_ids`` (2–8 succeeded siblings, ``run`` may be one). Its input
    holds ``instruction`` (default :data:`DEFAULT_FUSE_INSTRUCTION`), the question and the answers,
    so its context (and the audit of it) shows the sources. Its provenance lists them in order.

    Raises InvalidInput, NotFound (a source not a sibling), Conflict (a source not succeeded) and as
    :func:`run_start`."""
    sources = _fuse_sources(run, source_ids)
    instruction = clean_text(instruction or DEFAULT_FUSE_INSTRUCTION, field="instruction", max_length=2000,
                             multiline=True)
    prompt = fuse_prompt(question=run_input(sources[0]), answers=_answers(sources), instruction=instruction)
    kwargs = {"agent": agent} if agent is not None else {"model": run.model, "connection": run.connection}
    fused = run_start(session=session, input=prompt, parent=run.parent_run, **kwargs)
    provenance = Provenance.objects.create(run=fused, kind=Kind.FUSE, instruction=instruction)
    ProvenanceSource.objects.bulk_create(
        ProvenanceSource(provenance=provenance, run=source, position=index) for index, source in enumerate(sources))
    Message.objects.filter(run=fused, position=0).update(
        metadata={"provenance": selectors.provenance_snapshot(kind=Kind.FUSE, sources=sources)})
    return fused


# --- merge ------------------------------------------------------------------------------------------

@dataclass
class MergePlan:
    """What a merge would write: ``messages`` (OpenAI format, exactly as they enter the target's
    context), their ``tokens`` (each message with its template overhead, as the context build
    counts them), the ``carried`` runs, the candidate ``runs`` of the source branch since the
    common ancestor, and the digest text (digest mode)."""

    target: Run
    source: Run
    mode: str
    messages: list[dict]
    tokens: int
    carried: list[Run]
    runs: list[Run]
    branch_name: str
    digest: str = ""
    ancestor: Run | None = None
    message_rows: list[dict] = field(default_factory=list)


def _check_pair(session: Session, target: Run, source: Run) -> None:
    if not session.can_branch_from(target):
        raise NotFound("The target run is not part of this session.")
    if not session.can_branch_from(source):
        raise NotFound("source_run_id is not a run of this session.")
    if target.status != RunStatus.SUCCEEDED:
        raise Conflict("Merge into a turn that has finished with an answer.")


def _chosen(since: selectors.BranchSince, mode: str, run_ids: list | None) -> list[Run]:
    """The runs a merge carries: ``run_ids`` (turns mode; default all) among the source branch's
    runs since the common ancestor, in path order. Raises InvalidInput."""
    candidates = [r for r in since.runs if r.status == RunStatus.SUCCEEDED]
    if not candidates:
        raise InvalidInput("The source branch has no finished turn that the target does not already have.")
    if run_ids is None or mode == Mode.DIGEST:
        return candidates
    if not isinstance(run_ids, list) or not run_ids or len(set(run_ids)) != len(run_ids):
        raise InvalidInput("run_ids must list distinct turns of the source branch.")
    by_id = {r.pk: r for r in candidates}
    unknown = [str(pk) for pk in run_ids if pk not in by_id]
    if unknown:
        raise InvalidInput(f"Not a finished turn of the source branch since the common ancestor: "
                           f"{', '.join(unknown)[:200]}.")
    chosen = set(run_ids)
    return [r for r in candidates if r.pk in chosen]


def _digest_header(name: str, carried: list[Run]) -> str:
    turns = f"turns {carried[0].depth + 1}–{carried[-1].depth + 1}" if len(carried) > 1 else \
        f"turn {carried[0].depth + 1}"
    branch = f"the branch “{name}”" if name else "another branch"
    return f"Digest of {branch} ({turns}), merged into this conversation:\n\n"


def _counted(target: Run, messages: list[dict]) -> tuple[int, list[dict]]:
    counter = counter_for(base_url_for(target.connection))
    rows = [{"role": m["role"], "tokens": overhead_for(m["role"]) + counter.count(m["content"])} for m in messages]
    return sum(row["tokens"] for row in rows), rows


def merge_plan(*, session: Session, target: Run, source: Run, mode: str, run_ids: list | None = None,
               digest: str | None = None) -> MergePlan:
    """The preview of a merge (nothing written): which runs it carries and the exact messages the
    merge turn will hold. Digest mode needs ``digest`` (the text as confirmed; an agent drafts one
    in a run of its own first, :func:`digest_draft_start`).

    Raises InvalidInput (mode, run_ids, digest missing or empty), NotFound (a run outside the
    session's tree) and Conflict (target not succeeded)."""
    if mode not in Mode.values:
        raise InvalidInput("mode must be turns or digest.")
    _check_pair(session, target, source)
    since = selectors.branch_since(target, source)
    carried = _chosen(since, mode, run_ids)
    name = selectors.branch_name(session, source, since.runs)
    if mode == Mode.TURNS:
        messages = [m.as_openai() for m in selectors.carried_messages([r.pk for r in carried])]
        digest_text = ""
    else:
        if digest is None:
            raise InvalidInput("digest is required in digest mode (draft one first: its run's answer).")
        digest_text = clean_text(digest, field="digest", max_length=settings.ARBOR_MAX_INPUT_CHARS, multiline=True)
        messages = [{"role": "user", "content": _digest_header(name, carried) + digest_text}]
    tokens, rows = _counted(target, messages)
    return MergePlan(target=target, source=source, mode=mode, messages=messages, tokens=tokens,
                     carried=carried, runs=since.runs, branch_name=name, digest=digest_text, ancestor=since.ancestor,
                     message_rows=rows)


def digest_prompt(carried: list[Run]) -> str:
    """The digest draft run's input: :data:`DIGEST_INSTRUCTION`, then the transcript of the
    ``carried`` turns (``Role: text`` paragraphs). Raises InvalidInput when it is longer than
    ``ARBOR_MAX_INPUT_CHARS`` (then carry chosen turns, or write the digest)."""
    transcript = "\n\n".join(f"{m.role.capitalize()}: {m.content}"
                               for m in selectors.carried_messages([r.pk for r in carried]))
    prompt = f"{DIGEST_INSTRUCTION}\n\nConversation:\n{transcript}"
    if len(prompt) > settings.ARBOR_MAX_INPUT_CHARS:
        raise InvalidInput(f"The branch is too long to draft a digest of ({len(prompt)} characters, at most "
                           f"{settings.ARBOR_MAX_INPUT_CHARS}): write the digest, or carry chosen turns.")
    return prompt


def _drafts_session(session: Session) -> Session:
    """The session that holds ``session``'s digest drafts (one per merged session, made on the first draft)."""
    earlier = (DigestDraft.objects.filter(session=session, run__session__deleted_at__isnull=True)
               .select_related("run__session").order_by("created_at").first())
    if earlier is not None:
        return earlier.run.session
    return session_create(owner=session.owner, title=f"Merge digests · {session.title or 'Untitled'}"[:200])


def _digest_details(kwargs: dict, draft: DigestDraft) -> dict:
    return {"session_id": str(draft.session_id), "run_id": str(draft.run_id), "source_run_id": str(draft.source_id)}


@transaction.atomic
@audited("merge.digest_draft", details=_digest_details)
def digest_draft_start(*, session: Session, target: Run, source: Run, agent=None) -> DigestDraft:
    """Ask ``agent`` (default: the target's agent, else the target's model and connection) to draft
    a digest of the source branch since the common ancestor: an ordinary run (queued here, executed
    by the engine in a worker, streamed and audited like any other) whose input is
    :func:`digest_prompt`; a root run of the session's "Merge digests" session, so the chat of
    ``session`` does not change. Follow the run; its answer is the draft (:func:`digest_draft_text`).

    Raises InvalidInput (nothing to carry, too long), NotFound, Conflict (target not succeeded)
    and as :func:`run_start`."""
    _check_pair(session, target, source)
    carried = _chosen(selectors.branch_since(target, source), Mode.DIGEST, None)
    prompt = digest_prompt(carried)
    agent = agent or target.agent
    kwargs = {"agent": agent} if agent is not None else {"model": target.model, "connection": target.connection}
    run = run_start(session=_drafts_session(session), input=prompt, parent=None, activate=False,
                    params={"max_tokens": DIGEST_MAX_TOKENS, "temperature": 0.0}, **kwargs)
    return DigestDraft.objects.create(run=run, session=session, target=target, source=source)


def digest_draft_for(session: Session, run_id) -> DigestDraft:
    """The digest draft of ``session`` whose run is ``run_id``, run loaded. Raises NotFound."""
    draft = DigestDraft.objects.select_related("run").filter(session=session, run_id=run_id).first()
    if draft is None:
        raise NotFound("No such digest draft for this session.")
    return draft


def digest_draft_text(draft: DigestDraft) -> str:
    """The draft's answer, stripped. Raises Conflict while its run is going, when it did not
    succeed (naming why) or answered nothing."""
    run = draft.run
    if run.status in ACTIVE_STATUSES:
        raise Conflict("The digest is still being drafted.")
    if run.status != RunStatus.SUCCEEDED:
        raise Conflict(f"The digest draft {run.status}: {run.error_message or run.error_type or 'no answer'}"[:300])
    text = selectors.answers_of([run]).get(run.pk, "").strip()
    if not text:
        raise Conflict("The model answered with an empty digest; write one instead.")
    return text


def _merge_details(kwargs: dict, run: Run) -> dict:
    return {"source_run_id": str(kwargs["plan"].source.pk), "mode": kwargs["plan"].mode,
            "carried": [str(r.pk) for r in kwargs["plan"].carried]}


@transaction.atomic
@audited("merge.create", details=_merge_details)
def merge_create(*, session: Session, plan: MergePlan) -> Run:
    """Write the merge turn of ``plan`` (:func:`merge_plan`): a finished run below the target whose
    own messages are the carried content, with its provenance; it becomes the session's shown run,
    so the next turn's context includes the carried messages. Writes the run, its messages, the
    provenance and its sources, and the session's active run."""
    target, now = plan.target, timezone.now()
    snapshot = selectors.provenance_snapshot(kind=Kind.MERGE, sources=plan.carried, mode=plan.mode, source=plan.source,
                                             branch_name=plan.branch_name)
    run = Run.objects.create(
        session=session, parent_run=target, depth=target.depth + 1, status=RunStatus.SUCCEEDED,
        model=target.model, params={}, agent=target.agent, connection=target.connection,
        memory_id=target.memory_id, created_at=now, started_at=now, finished_at=now, finish_reason=MERGE_FINISH,
    )
    Message.objects.bulk_create(
        Message(run=run, position=index, role=data["role"], content=data["content"], token_count=row["tokens"],
                metadata={"merged_from": str(plan.source.pk), **({"provenance": snapshot} if index == 0 else {})},
                created_at=now)
        for index, (data, row) in enumerate(zip(plan.messages, plan.message_rows, strict=True)))
    provenance = Provenance.objects.create(run=run, kind=Kind.MERGE, mode=plan.mode, source_run=plan.source,
                                           branch_name=plan.branch_name, digest=plan.digest)
    ProvenanceSource.objects.bulk_create(ProvenanceSource(provenance=provenance, run=source, position=index)
                                         for index, source in enumerate(plan.carried))
    session_rewind(session=session, run=run)
    return run


@transaction.atomic
@audited("merge.undo", details=lambda kwargs, prune: {"run_id": str(prune.run_id)})
def merge_undo(*, session: Session, run: Run) -> Prune:
    """Undo a merge: the merge turn is pruned from the session's tree like any subtree
    (:func:`branches.services.prune_subtree`, whose own undo gives it back), and the shown branch
    returns to the target. Only within ``ARBOR_UNDO_DELETE_SECONDS`` of the merge, and only while
    no turn hangs below the merge turn (an undo never prunes turns the user added after it: prune
    the merge turn's subtree explicitly for that).

    Raises NotFound (not a merge turn of this session, or its undo time has passed), Conflict
    (turns were added below the merge turn) and Conflict as :func:`prune_subtree`."""
    if selectors.merge_turn(run) is None or run.session_id != session.pk:
        raise NotFound("That run is not a merge turn of this session.")
    if run.created_at < undo_cutoff():
        raise NotFound("Nothing to undo: the merge's undo time has passed.")
    below = Run.objects.children_of(run).unpruned().count()
    if below:
        raise Conflict(f"The merge can no longer be undone: {below} turn{'s were' if below != 1 else ' was'} "
                       "added below it. Prune the merge turn (it prunes them too) if you mean that.")
    prune = prune_subtree(session=session, run=run)
    session_rewind(session=session, run=run.parent_run)  # the target, whatever else hangs below it
    return prune
