"""Request-side actions on sessions and runs: create, rename, delete, fork, show a branch, rewind;
start, regenerate, edit and cancel runs. The execution of a run in a worker is :mod:`engine.execute`.

Functions here are keyword-only, typed and transactional (HackSoft's Django style guide); work for
a worker is enqueued with ``transaction.on_commit`` so a task never sees an uncommitted run.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone

from audit.log import audited
from core import queue
from core.errors import Conflict, InvalidInput, NotFound
from core.params import clean_params
from core.text import clean_text
from core.tokens import estimate_tokens
from memory.models import DEFAULT_MEMORY_ID, BranchSettings
from memory.selectors import branch_settings_for
from streams.backends import TERMINAL, get_stream

from .models import ACTIVE_STATUSES, MAX_LABELS, BranchLabel, Message, Role, Run, RunStatus, Session
from .tasks import first_message_title

_ACTIVE = object()  # "continue from the session's active run"
_AGENTS = object()  # "the agent's connection"


# --- sessions -------------------------------------------------------------------------------------

@transaction.atomic
def session_create(*, owner, title: str = "") -> Session:
    title = clean_text(title, field="title", max_length=200, required=False)
    return Session.objects.create(owner=owner, title=title)


@transaction.atomic
def session_rename(*, session: Session, title: str) -> Session:
    session.title = clean_text(title, field="title", max_length=200)
    session.save(update_fields=["title"])
    return session


@transaction.atomic
def session_delete(*, session: Session) -> Session:
    """Soft-delete: the session disappears for its owner; its runs stay, so forks keep working."""
    session.deleted_at = timezone.now()
    session.save(update_fields=["deleted_at"])
    return session


@transaction.atomic
def session_restore(*, session: Session) -> Session:
    session.deleted_at = None
    session.save(update_fields=["deleted_at"])
    return session


def _copy_labels_to_fork(fork: Session) -> int:
    """Give a new fork copies of the labels its source session shows on the runs the fork shares
    (the ancestors of ``forked_from_run``, it included); returns how many. Called when the fork is
    made, inside its transaction: one query when the source has no label, two otherwise."""
    if fork.forked_from_run_id is None:
        return 0
    source_id = fork.forked_from_run.session_id
    shared = Run.objects.ancestor_of(fork.forked_from_run_id, inclusive=True).values("pk")
    labels = BranchLabel.objects.filter(session_id=source_id, run_id__in=shared).visible().order_by("created_at")
    copies = [BranchLabel(session=fork, run_id=label.run_id, name=label.name, created_at=label.created_at)
              for label in labels[:MAX_LABELS]]
    BranchLabel.objects.bulk_create(copies)
    return len(copies)


@transaction.atomic
@audited("run.fork")
def session_fork(*, run: Run, owner, title: str = "") -> Session:
    """A new session continuing from ``run``: one row, whatever the depth; no run is copied (only
    the labels standing on the shared turns, :func:`_copy_labels_to_fork`).

    Raises Conflict while ``run`` is still queued or running (its answer is not final yet).
    """
    if run.status in ACTIVE_STATUSES:
        raise Conflict("This run has not finished yet; fork it once it has.")
    source_title = run.session.title or "session"
    fork = Session.objects.create(
        owner=owner,
        title=(title or f"Fork of {source_title}")[:200],
        forked_from_run=run,
        active_run=run,
    )
    _copy_labels_to_fork(fork)  # the labels on the shared turns come along; from now on they are its own
    return fork


@transaction.atomic
@audited("session.set_active")
def session_set_active(*, session: Session, run: Run) -> Run:
    """Show the branch through ``run``: the active run becomes the newest leaf below it.

    Raises NotFound when ``run`` is not in the session's tree.
    """
    if not session.can_branch_from(run):
        raise NotFound("That run is not part of this session.")
    leaf = (
        Run.objects.descendant_of(run, inclusive=True).filter(session=session).unpruned()
        .order_by("-created_at").first()
        if run.session_id == session.pk
        else None
    ) or run
    Session.objects.filter(pk=session.pk).update(active_run=leaf)
    session.active_run = leaf
    return leaf


@transaction.atomic
@audited("session.rewind")
def session_rewind(*, session: Session, run: Run) -> Run:
    """Continue from here: the branch shown ends at ``run`` itself (unlike
    :func:`session_set_active`, which opens the newest leaf below it); the session's next run
    branches from it. Returns ``run``.

    Raises NotFound when ``run`` is not in the session's tree.
    """
    if not session.can_branch_from(run):
        raise NotFound("That run is not part of this session.")
    Session.objects.filter(pk=session.pk).update(active_run=run)
    session.active_run = run
    return run


# --- runs -----------------------------------------------------------------------------------------

def clean_input(text) -> str:
    """A user message as it will be stored: not empty, at most ``ARBOR_MAX_INPUT_CHARS``
    characters, no control characters but tab and line breaks (kept as typed, not stripped).
    Raises InvalidInput."""
    return clean_text(text, field="input", max_length=settings.ARBOR_MAX_INPUT_CHARS, multiline=True, strip=False)


def _run_params(params: dict | None, agent=None) -> dict:
    """The run's parameters: the agent's, overridden by ``params``, each checked by
    :func:`core.params.clean_params`; ``max_tokens`` defaults to ``ARBOR_MAX_OUTPUT_TOKENS``.
    ``system`` (a run's own system prompt, as imported conversations carry) is kept, checked as
    text; it is Arbor's, never sent as a parameter."""
    system = None
    if isinstance(params, dict) and "system" in params:
        params = dict(params)
        system = clean_text(params.pop("system"), field="system", max_length=settings.ARBOR_MAX_INPUT_CHARS,
                            multiline=True, strip=False, required=False)
    merged = {**clean_params(agent.params if agent is not None else None), **clean_params(params)}
    merged.setdefault("max_tokens", settings.ARBOR_MAX_OUTPUT_TOKENS)
    if system:
        merged["system"] = system
    return merged


@transaction.atomic
@audited("run.start")
def run_start(
    *,
    session: Session,
    input: str,
    parent: Run | None | object = _ACTIVE,
    model: str | None = None,
    params: dict | None = None,
    agent=None,
    connection=_AGENTS,
    activate: bool = True,
) -> Run:
    """Create a queued run and enqueue its execution after commit.

    ``agent`` (a :class:`memory.models.Agent`, default: the session's default agent) answers the
    run: its model, parameters and ``memory_id`` apply unless ``model``/``params`` override them.
    ``connection`` (a :class:`connections.models.Connection`; None: the default connection) is the
    endpoint the run is sent to; omitted: the agent's (copied, as the model is).

    ``parent`` omitted: continue from the session's active run (a root run if there is none).
    ``parent=None``: a new root. Otherwise ``parent`` must be in the session's tree and finished.
    Writes a constant number of rows (the run, its input message, the session) at any depth.

    ``activate`` (default True): the new run becomes the session's active run, the branch the chat
    shows. Runs started on the user's behalf elsewhere (a comparison's variants) pass False: they
    hang in the session's tree without moving the chat; opening one is an explicit choice
    (:func:`session_set_active`).

    Raises InvalidInput (empty, oversized or non-string input, control characters in the input or
    model name, unknown parameters or values of the wrong type or out of range), NotFound (parent
    not in this session's tree) and Conflict (parent still running, session deleted).
    """
    text = clean_input(input)
    if model is not None:
        model = clean_text(model, field="model", max_length=200, required=False) or None
    if session.is_deleted:
        raise Conflict("This session is deleted.")
    parent = _parent_for(session, parent)
    agent, run_params = _agent_and_params(session, parent, agent, params)
    now = timezone.now()
    run = Run.objects.create(
        session=session,
        parent_run=parent,
        depth=0 if parent is None else parent.depth + 1,
        status=RunStatus.QUEUED,
        model=((model or (agent.model if agent is not None else None)) or settings.ARBOR_MODEL)[:200],
        params=run_params,
        agent=agent,
        connection_id=_connection_id(connection, agent),
        memory_id=agent.memory_id if agent is not None else DEFAULT_MEMORY_ID,
        created_at=now,
    )
    # Counted before the insert (an estimate: no model call has seen it yet), never UPDATEd after.
    Message.objects.create(run=run, position=0, role=Role.USER, content=text, created_at=now,
                           token_count=estimate_tokens(text))
    _session_after_start(session, run, text, activate=activate, now=now)
    _enqueue(run)
    return run


def _parent_for(session: Session, parent) -> Run | None:
    """The parent run of a new run of ``session``: the session's active run read fresh when
    ``parent`` is omitted (another tab or the worker may have moved on), else ``parent`` checked.
    Raises NotFound (not in the session's tree) and Conflict (not finished)."""
    if parent is _ACTIVE:
        active = Session.objects.filter(pk=session.pk).values("active_run_id")[:1]
        parent = Run.objects.filter(pk=Subquery(active)).first()
    if parent is not None:
        if not session.can_branch_from(parent):
            raise NotFound("parent_run_id is not a run of this session.")
        if parent.status in ACTIVE_STATUSES:
            raise Conflict("The parent run has not finished yet.")
    return parent


def _agent_and_params(session: Session, parent: Run | None, agent, params: dict | None) -> tuple:
    """``(agent, params)`` of a new run below ``parent``: the chat settings saved on ``parent`` or
    above it (:func:`memory.selectors.branch_settings_for`) give the agent when none is given (then
    the session's default agent) and the parameters under ``params``; the run records the settings'
    system prompt, compaction and id (:meth:`memory.models.BranchSettings.run_params`). A
    regenerate's copied ``params`` lose the keys the settings add, so the settings read now apply."""
    branch = branch_settings_for(parent)  # the chat settings panel's, from the turn they were saved on
    if agent is None and branch is not None and branch.agent_id is not None:
        agent = branch.agent
    if agent is None and session.default_agent_id is not None:
        agent = session.default_agent
    own = {k: v for k, v in (params or {}).items() if k not in BranchSettings.RUN_KEYS}  # a regenerate's copy
    run_params = _run_params({**(branch.params if branch else {}), **own}, agent)
    if branch is not None:
        run_params = {**branch.run_params(), **run_params}
    return agent, run_params


def _connection_id(connection, agent) -> int | None:
    """The connection a new run is sent to: ``connection``'s (None: the default connection), or
    when omitted the agent's."""
    if connection is _AGENTS:
        return agent.connection_id if agent is not None else None
    return getattr(connection, "pk", None)


def _session_after_start(session: Session, run: Run, text: str, *, activate: bool, now) -> None:
    """One UPDATE of the session for its new run: ``updated_at``, the active run (``activate``),
    and a title from the input when it has none; ``session`` in memory follows."""
    fields = {"active_run": run, "updated_at": now} if activate else {"updated_at": now}
    if not session.title:
        fields["title"] = first_message_title(text)
    Session.objects.filter(pk=session.pk).update(**fields)
    for name, value in fields.items():
        setattr(session, name, value)


def _enqueue(run: Run) -> None:
    queue.send_on_commit(queue.EXECUTE_RUN, str(run.pk), queue=settings.ARBOR_RUN_QUEUE)


def run_input(run: Run) -> str:
    first = run.messages.filter(position=0).values_list("content", flat=True).first()
    return first or ""


@audited("run.regenerate")
def run_regenerate(*, run: Run, session: Session | None = None) -> Run:
    """A sibling of ``run`` with the same input (also how a failed run is retried)."""
    session = session or run.session
    parent = run.parent_run
    return run_start(session=session, input=run_input(run), parent=parent, model=run.model, params=run.params,
                     agent=run.agent, connection=run.connection)


@audited("run.edit")
def run_edit(*, run: Run, input: str, session: Session | None = None) -> Run:
    """A sibling of ``run`` with new input: an edited user message."""
    session = session or run.session
    return run_start(session=session, input=input, parent=run.parent_run, model=run.model, params=run.params,
                     agent=run.agent, connection=run.connection)


@transaction.atomic
@audited("run.cancel")
def run_cancel(*, run: Run) -> Run:
    """Cancel a queued or running run. A running generation stops within a second (the worker's
    watcher polls every 0.25 s and closes the model stream); the partial text is kept.

    Raises Conflict when the run has already finished.
    """
    now = timezone.now()
    if Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(status=RunStatus.CANCELLED, finished_at=now):
        transaction.on_commit(lambda: get_stream().publish(run.pk, TERMINAL, {"status": "cancelled", "error": None}))
    elif not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(status=RunStatus.CANCELLED):
        run.refresh_from_db()
        raise Conflict(f"This run has already {run.status}.")
    run.refresh_from_db()
    return run


# --- habits from other chat apps: continue generating, thumbs, pins --------------------------------

CONTINUE_INPUT = "Continue exactly where your previous answer stopped, without repeating any of it."


@transaction.atomic
@audited("run.continue")
def run_continue(*, run: Run, session: Session | None = None) -> Run:
    """"Continue generating": a child of ``run`` (an answer cut at ``max_tokens``, finish reason
    ``length``) that asks the same model, with the same parameters, to go on; marked
    ``continues_answer`` so the chat shows it as the same turn's continuation.

    Raises Conflict unless ``run`` succeeded with finish reason ``length``; as :func:`run_start`."""
    session = session or run.session
    if run.status != RunStatus.SUCCEEDED or run.finish_reason != "length":
        raise Conflict("Only an answer cut at its token limit can be continued.")
    new = run_start(session=session, input=CONTINUE_INPUT, parent=run, model=run.model, params=run.params,
                    agent=run.agent, connection=run.connection)
    Run.objects.filter(pk=new.pk).update(continues_answer=True)  # before commit: the worker sees it
    new.continues_answer = True
    return new


@audited("run.rate")
def run_rate(*, run: Run, rating: int | None) -> Run:
    """Thumbs on an answer: ``rating`` 1 (up), -1 (down) or None (cleared); stored on the run
    (:attr:`Run.rating`) for comparison statistics. Raises InvalidInput for any other value."""
    if rating not in (1, -1, None):
        raise InvalidInput("rating must be 1, -1 or empty.")
    Run.objects.filter(pk=run.pk).update(rating=rating)
    run.rating = rating
    return run


def session_pin(*, session: Session, pinned: bool) -> Session:
    """Pin ``session`` to the top of the sidebar (``pinned``), or unpin it."""
    session.pinned_at = timezone.now() if pinned else None
    Session.objects.filter(pk=session.pk).update(pinned_at=session.pinned_at)
    return session
