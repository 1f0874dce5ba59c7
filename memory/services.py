"""Writes for agents (the JSON API's; the admin saves through its ModelForm): create, update,
delete. Validation is the admin's — :meth:`memory.models.Agent.full_clean`, so
:meth:`~memory.models.Agent.clean` checks the compaction policy, parameters, tools, connection and
model — after the connection is looked up for the caller (another user's is 404). Nothing is
written when anything is refused.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.log import record
from connections.selectors import get_connection_for
from core import queue
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.params import clean_params
from core.text import clean_json_strings, clean_text

from .models import Agent, BranchSettings, Compaction, CompactionStatus, Pin
from .policy import parse_policy
from .selectors import next_context, run_model

# Text fields: (max length, multi-line); every one goes through core.text.clean_text.
TEXT_FIELDS = {"name": (100, False), "model": (200, False), "system_prompt": (100_000, True),
               "memory_id": (100, False)}
FIELDS = ("name", "connection_id", "model", "system_prompt", "params", "memory_id", "memory_window_size",
          "context_window", "reserved_output_tokens", "compaction", "tools")


def may_share(user) -> bool:
    """May make and change shared agents: active staff with the ``change_agent`` permission (as in the admin)."""
    return bool(user.is_active and user.is_staff and user.has_perm("memory.change_agent"))


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{'' if field == '__all__' else field + ': '}{' '.join(errors)}"
                         for field, errors in exc.message_dict.items())
    return "; ".join(exc.messages)


def _apply(*, user, agent: Agent, data: dict) -> None:
    unknown = set(data) - {*FIELDS, "shared"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    if data.get("shared") is not None and bool(data["shared"]) != (agent.owner_id is None):
        if not may_share(user):
            raise Forbidden("Only an administrator can share an agent (or stop sharing it).")
        agent.owner = None if data["shared"] else user
    if "connection_id" in data:
        connection_id = data["connection_id"]
        agent.connection = get_connection_for(user, connection_id) if connection_id is not None else None
    for field in FIELDS:
        if field in data and field != "connection_id":
            value = data[field]
            if value is None and field in ("name", "model", "system_prompt", "memory_id"):
                value = ""
            if value is None and field in ("params", "compaction"):
                value = {}
            if field in TEXT_FIELDS:
                limit, multiline = TEXT_FIELDS[field]
                value = clean_text(value, field=field, max_length=limit, required=False, multiline=multiline,
                                   strip=not multiline)
            elif field in ("params", "compaction", "tools"):
                value = clean_json_strings(value, field=field)
            setattr(agent, field, [] if value is None and field == "tools" else value)


def _save(agent: Agent) -> Agent:
    try:
        agent.full_clean()
    except ValidationError as exc:
        raise InvalidInput(_messages(exc)) from None
    agent.save()
    return agent


@transaction.atomic
def agent_create(*, user, data: dict) -> Agent:
    """A new agent owned by ``user`` (``shared``: by nobody, administrators only) from ``data``
    (the fields of :data:`FIELDS`). Raises InvalidInput (anything the admin would refuse, a name
    already used), NotFound (a connection ``user`` may not use) and Forbidden."""
    agent = Agent(owner=user)
    _apply(user=user, agent=agent, data=data)
    return _save(agent)


@transaction.atomic
def agent_update(*, user, agent: Agent, data: dict) -> Agent:
    """Change the fields given in ``data``; the others stay. A shared agent takes an administrator.
    Raises as :func:`agent_create`."""
    if agent.owner_id is None and not may_share(user):
        raise Forbidden("This agent is shared; only an administrator can change it.")
    _apply(user=user, agent=agent, data=data)
    return _save(agent)


@transaction.atomic
def agent_duplicate(*, user, agent: Agent) -> Agent:
    """A copy of ``agent`` (one of ``user``'s or a shared one) owned by ``user``, named “<name> (copy)”
    (“(copy 2)”, … when taken). Every setting is copied; the copy is validated like a new agent."""
    taken = set(Agent.objects.filter(owner=user, name__startswith=agent.name[:80]).values_list("name", flat=True))
    base = f"{agent.name[:80]} (copy"
    name = next(f"{base}{'' if n == 1 else f' {n}'})" for n in range(1, len(taken) + 2)
                if f"{base}{'' if n == 1 else f' {n}'})" not in taken)
    copy = Agent(owner=user, name=name)
    for field in FIELDS:
        if field != "name":
            setattr(copy, field, getattr(agent, field))
    return _save(copy)


@transaction.atomic
def agent_delete(*, user, agent: Agent) -> None:
    """Delete an agent; its runs keep their model, connection and memory id (their ``agent`` is emptied)."""
    if agent.owner_id is None and not may_share(user):
        raise Forbidden("This agent is shared; only an administrator can delete it.")
    agent.delete()


# --- pins ---------------------------------------------------------------------------------------

def pin_create(*, user, run, message_id: int | None = None) -> tuple[Pin, bool]:
    """Pin the turn ``run`` (a run of ``user``'s, already looked up), or one of its messages.
    Returns ``(pin, created)``: pinning what is pinned already returns the existing pin. Raises
    InvalidInput for a message that is not the run's (nothing written)."""
    message = None
    if message_id is not None:
        message = run.messages.filter(pk=message_id).first() if isinstance(message_id, int) else None
        if message is None:
            raise InvalidInput(f"message_id: {message_id!r} is not a message of this turn.")
    with transaction.atomic():
        existing = Pin.objects.filter(run=run, message=message).first()
        if existing is not None:
            return existing, False
        return Pin.objects.create(run=run, message=message, created_by=user), True


def pin_delete(*, pin: Pin) -> None:
    """Unpin: later contexts may compact or cut that message again; earlier ones are unchanged."""
    pin.delete()


# --- compaction you can steer -------------------------------------------------------------------

MAX_SUMMARY_CHARS = 20_000


@transaction.atomic
def summary_edit(*, user, compaction: Compaction, text: str) -> Compaction:
    """Replace a ready compaction's summary with ``text`` (the old text is kept in ``versions``).
    Contexts built from now on send the new text; earlier model calls keep theirs (their stored
    spec names the version they sent, which ``versions`` keeps). Audited as
    ``compaction.summary_edit``. Raises InvalidInput (empty, too long) and Conflict (not ready:
    pending, failed or undone); nothing written then."""
    text = (text or "").strip() if isinstance(text, str) else ""
    if not text:
        raise InvalidInput("summary: the summary cannot be empty (undo the compaction to send the raw turns).")
    if len(text) > MAX_SUMMARY_CHARS:
        raise InvalidInput(f"summary: at most {MAX_SUMMARY_CHARS} characters.")
    locked = Compaction.objects.select_for_update().get(pk=compaction.pk)
    if locked.status != CompactionStatus.READY:
        raise Conflict(f"Only a ready summary can be edited; this compaction is {locked.status}.")
    old = locked.summary
    locked.versions = [*locked.versions, {"summary": old, "replaced_at": timezone.now().isoformat(),
                                          "by": user.get_username()}]
    locked.summary = text
    locked.save(update_fields=["summary", "versions"])
    record("compaction.summary_edit", target=locked,
           details={"run_id": str(locked.run_id), "version": len(locked.versions) + 1, "summary": text,
                    "previous": old})
    return locked


@transaction.atomic
def compaction_undo(*, user, compaction: Compaction) -> tuple[Compaction, str]:
    """Stop using a ready compaction: contexts built from now on send the raw turns it stood for
    (an earlier compaction on the path still applies). Returns ``(compaction, note)``: the note
    says whether the raw turns fit the usable window now or by how many tokens they are over (the
    budget then cuts the oldest turns) and what smaller strategy would do — measured now, by the
    engine's context builder on the compaction's turn with the compaction undone
    (:func:`memory.selectors.next_context`). Audited as ``compaction.undo`` with the figures.
    Conflict when it is not ready."""
    locked = Compaction.objects.select_for_update().select_related("run").get(pk=compaction.pk)
    if locked.status != CompactionStatus.READY:
        raise Conflict(f"Only a ready compaction can be undone; this one is {locked.status}.")
    locked.status = CompactionStatus.UNDONE
    locked.save(update_fields=["status"])
    now = next_context(locked.run)
    needed, usable = now["needed"], now["usable_window"]
    over = needed - usable if usable else 0
    if now["error"]:
        note = f"Undone. {now['error']}"
    elif over > 0:
        note = (f"Undone. The raw turns need {needed:,} tokens now: {over:,} over the usable window of {usable:,}, "
                "so later contexts cut the oldest turns to fit. A smaller strategy keeps more: “keep the last N "
                "turns”, or summarise fewer turns (a larger “keep recent turns”).")
    else:
        note = f"Undone. Later contexts send the raw turns: {needed:,} tokens now, within the usable {usable:,}."
    record("compaction.undo", target=locked,
           details={"run_id": str(locked.run_id), "over_by": max(0, over), "needed": needed, "usable_window": usable})
    return locked, note


@transaction.atomic
def compact_now(*, user, run, policy: dict | None = None) -> Compaction:
    """Compact the branch ending at ``run`` (one of ``user``'s) now, in the background: a pending
    compaction of ``run`` whose strategies all act (target 0), run by the ``memory.compact`` task.
    ``policy``: the compaction policy (default the run's agent's). Audited as ``compaction.request``.
    Raises Conflict when one is in progress on this branch or this turn is compacted already."""
    busy = Compaction.objects.filter(run__in=run_model().objects.ancestor_of(run, inclusive=True),
                                     memory_id=run.memory_id,
                                     status__in=(CompactionStatus.PENDING, CompactionStatus.RUNNING))
    if busy.exists():
        raise Conflict("A compaction of this branch is in progress already.")
    if policy is None:
        policy = run.params.get("compaction") or (run.agent.compaction if run.agent_id else None)
    parsed = parse_policy(policy)
    parsed.target = 0.0
    existing = Compaction.objects.select_for_update().filter(run=run, memory_id=run.memory_id).first()
    if existing is not None and existing.status == CompactionStatus.READY:
        raise Conflict("This turn is compacted already: undo that compaction first, or compact a later turn.")
    fields = {"status": CompactionStatus.PENDING, "policy": parsed.to_json(), "requested_by": user, "error": "",
              "tokens_before": 0, "utilisation_before": 0.0, "started_at": None, "finished_at": None, "attempts": 0}
    if existing is None:
        compaction = Compaction.objects.create(run=run, memory_id=run.memory_id, **fields)
    else:
        for key, value in fields.items():
            setattr(existing, key, value)
        existing.save()
        compaction = existing
    queue.send_on_commit(queue.COMPACT, compaction.pk,
                         queue=settings.ARBOR_COMPACTION_QUEUE or settings.ARBOR_RUN_QUEUE)
    record("compaction.request", target=compaction, details={"run_id": str(run.pk), "policy": parsed.to_json()})
    return compaction


# --- chat settings (per branch) -----------------------------------------------------------------

SETTINGS_FIELDS = ("agent_id", "system_prompt", "params", "compaction")
MAX_SYSTEM_PROMPT_CHARS = 20_000


@transaction.atomic
def branch_settings_save(*, user, run, data: dict) -> BranchSettings:
    """Save the chat settings that runs started below ``run`` (one of ``user``'s) take, from the
    next turn on; each save is a new row, audited as ``settings.change`` with what was saved.

    ``data``: ``agent_id`` (one ``user`` may pick, or None), ``system_prompt`` (empty: the agent's),
    ``params`` (:func:`core.params.clean_params`), ``compaction`` (a policy, :func:`parse_policy`;
    empty: the agent's). Raises InvalidInput naming the field, NotFound for an agent ``user`` may
    not pick; nothing is written then."""
    unknown = set(data) - set(SETTINGS_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    agent = None
    if data.get("agent_id") is not None:
        agent = Agent.objects.pickable_by(user).filter(pk=data["agent_id"]).first()
        if agent is None:
            raise NotFound(f"No agent with id {data['agent_id']}.")
    prompt = data.get("system_prompt") or ""
    if not isinstance(prompt, str) or len(prompt) > MAX_SYSTEM_PROMPT_CHARS:
        raise InvalidInput(f"system_prompt: a text of at most {MAX_SYSTEM_PROMPT_CHARS} characters.")
    try:
        params = clean_params(data.get("params") or {})
    except InvalidInput as exc:
        raise InvalidInput(f"params: {exc.message}") from None
    compaction = data.get("compaction") or {}
    try:
        parse_policy(compaction)
    except ValidationError as exc:
        raise InvalidInput(f"compaction: {'; '.join(exc.messages)}") from None
    saved = BranchSettings.objects.create(run=run, agent=agent, system_prompt=prompt, params=params,
                                          compaction=compaction, created_by=user)
    record("settings.change", target=saved,
           details={"run_id": str(run.pk), "agent_id": agent.pk if agent else None, "system_prompt": prompt,
                    "params": params, "compaction": compaction})
    return saved
