"""``DatabaseMemoryStore``: a :class:`memory.stores.MemoryStore` over the dashboard's own tables
(conversations.Run / conversations.Message). It lives here, with the tables it reads, so that the
store library in :mod:`memory.stores` never imports the conversations app.

A store is a branch of the conversation tree seen through one ``memory_id``:

- ``DatabaseMemoryStore("notes", user=u)``: the store's own session (one per user and memory id,
  made on first use, listed in the dashboard like any other);
- ``DatabaseMemoryStore("notes", session=s)``: the active branch of a dashboard session;
- ``DatabaseMemoryStore("notes", run=r)``: the branch that ends at run ``r``.

Reading returns the messages on the path from the root to the branch's last run (its *head*) whose
run has this ``memory_id`` — one recursive query at any depth (:meth:`MessageQuerySet.on_path_to`).
Writing follows the tree's rules: a user message starts a new run (a child of the head, finished,
``model="memory-store"``); any other message is appended to the head if the head is a store run of
this memory id, else it starts a run too. Finished runs of the dashboard are never modified.

Concurrency: each write is one transaction that locks the session row (``SELECT ... FOR UPDATE``
on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers), so threads and processes sharing a
store append in a single line. In the ``session``/own-session modes the head is the session's
``active_run`` (shared by every process); in the ``run`` mode each store object keeps its own head,
so two stores opened on the same run write two sibling branches — the tree's way of branching.

``clear()`` does not delete anything: the next message starts a new root (runs are immutable and
may be shared by forks); the old branch stays in the tree.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from conversations.models import FINISHED_STATUSES, Message, Role, Run, RunStatus, Session
from core.fields import encryption_enabled
from memory.models import DEFAULT_MEMORY_ID
from memory.semantic import rank_messages
from memory.stores.base import (
    MemoryMessage,
    MemoryStore,
    MemoryStoreError,
    _parse_dt,
    bm25_rank,
    check_page,
    check_roles,
)
from memory.stores.models import MemoryStoreSession

STORE_MODEL = "memory-store"


def _to_memory(message: Message) -> MemoryMessage:
    return MemoryMessage(
        role=message.role, content=message.content, name=message.name, tool_calls=message.tool_calls,
        tool_call_id=message.tool_call_id, metadata=message.metadata or {}, created_at=message.created_at,
        id=message.pk,
    )


def store_session(*, owner, memory_id: str) -> Session:
    """The session of ``owner``'s store ``memory_id``, created on first use (race-free: the pair is unique)."""
    binding = MemoryStoreSession.objects.filter(owner=owner, memory_id=memory_id).select_related("session").first()
    if binding is not None:
        return binding.session
    try:
        with transaction.atomic():
            session = Session.objects.create(owner=owner, title=f"Memory store: {memory_id}"[:200])
            MemoryStoreSession.objects.create(owner=owner, memory_id=memory_id, session=session)
            return session
    except IntegrityError:  # another process made it first
        return MemoryStoreSession.objects.select_related("session").get(owner=owner, memory_id=memory_id).session


@transaction.atomic
def append_message(*, session_id, head_id, memory_id: str, message: MemoryMessage, use_active_run: bool
                   ) -> tuple[Message, Run]:
    """Write ``message`` below ``head_id`` (or below the session's active run when
    ``use_active_run``); returns the stored Message and the run that holds it, the branch's new head.

    Raises MemoryStoreError when the head is still queued or running (its answer is not final)."""
    session = Session.objects.select_for_update().get(pk=session_id)
    if use_active_run:
        head_id = session.active_run_id
    head = Run.objects.filter(pk=head_id).first() if head_id else None
    if head is not None and head.status not in FINISHED_STATUSES:
        raise MemoryStoreError("The branch's last run has not finished yet; add messages once it has.")
    extend = (
        head is not None and message.role != Role.USER and head.model == STORE_MODEL and head.memory_id == memory_id
        and head.session_id == session.pk
    )
    if extend:
        run = head
        position = (run.messages.aggregate(p=Max("position"))["p"] or 0) + 1
        Run.objects.filter(pk=run.pk).update(finished_at=message.created_at)
    else:
        run = Run.objects.create(
            session=session, parent_run=head, depth=0 if head is None else head.depth + 1, status=RunStatus.SUCCEEDED,
            model=STORE_MODEL, memory_id=memory_id, created_at=message.created_at, started_at=message.created_at,
            finished_at=message.created_at,
        )
        position = 0
    stored = Message.objects.create(
        run=run, position=position, role=message.role, content=message.content, name=message.name[:100],
        tool_calls=message.tool_calls, tool_call_id=message.tool_call_id[:100], metadata=message.metadata,
        created_at=message.created_at,
    )
    updates = {"updated_at": timezone.now()}
    if use_active_run:
        updates["active_run"] = run
    Session.objects.filter(pk=session.pk).update(**updates)
    return stored, run


class DatabaseMemoryStore(MemoryStore):
    """A branch of the conversation tree, read and written through ``memory_id`` (see the module doc).

    Give ``user`` (a user or its id) for the store's own session, ``session`` for a dashboard
    session's active branch, or ``run`` (a Run or its id) for the branch ending there; with
    ``user`` and ``session``/``run`` together the session must be that user's. Raises
    ``Session.DoesNotExist``/``Run.DoesNotExist`` when they are not found (or not the user's),
    ValueError for a bad ``memory_id`` or no scope at all.
    """

    thread_sensitive = True  # the ORM: AsyncMemoryStore runs it in Django's one sync thread

    def __init__(self, memory_id: str = DEFAULT_MEMORY_ID, *, user=None, session: Session | str | None = None,
                 run: Run | str | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(memory_id, str) or not memory_id.strip() or len(memory_id) > 100:
            raise ValueError("memory_id must be 1 to 100 characters")
        self.memory_id = memory_id
        owner = None
        if user is not None:
            owner = user if hasattr(user, "pk") else get_user_model().objects.get(pk=user)
        self._head_id = None
        if run is not None:
            run_obj = run if isinstance(run, Run) else Run.objects.get(pk=run)
            if owner is not None and not Session.objects.filter(pk=run_obj.session_id, owner=owner).exists():
                raise Run.DoesNotExist("That run is not in one of this user's sessions.")
            self.session_id = run_obj.session_id
            self._head_id = run_obj.pk
            self.use_active_run = False
        elif session is not None:
            qs = Session.objects.filter(owner=owner) if owner is not None else Session.objects.all()
            self.session_id = qs.get(pk=getattr(session, "pk", session)).pk
            self.use_active_run = True
        elif owner is not None:
            self.session_id = store_session(owner=owner, memory_id=memory_id).pk
            self.use_active_run = True
        else:
            raise ValueError("give user=, session= or run=")

    # -- the branch
    @property
    def head_id(self):
        """The id of the branch's last run (None for an empty or cleared store)."""
        if self.use_active_run:
            return Session.objects.filter(pk=self.session_id).values_list("active_run_id", flat=True).first()
        return self._head_id

    def _scope(self, head_id=None):
        head_id = head_id if head_id is not None else self.head_id
        if head_id is None:
            return Message.objects.none()
        return Message.objects.on_path_to(head_id).filter(run__memory_id=self.memory_id)

    # -- writing
    def _append(self, message: MemoryMessage) -> MemoryMessage:
        with self._lock:
            stored, run = append_message(session_id=self.session_id, head_id=self._head_id, memory_id=self.memory_id,
                                         message=message, use_active_run=self.use_active_run)
            if not self.use_active_run:
                self._head_id = run.pk
        return _to_memory(stored)

    def clear(self) -> None:
        with self._lock:
            if self.use_active_run:
                Session.objects.filter(pk=self.session_id).update(active_run=None, updated_at=timezone.now())
            self._head_id = None

    # -- reading
    def _all(self) -> list[MemoryMessage]:
        return [_to_memory(m) for m in self._scope()]

    def __len__(self) -> int:
        return self._scope().count()

    def get_history(self, limit=None, offset=0, roles=None) -> list[MemoryMessage]:
        check_page(limit, offset)
        qs = self._scope()
        if roles is not None:
            qs = qs.filter(role__in=check_roles(roles))
        if limit == 0:
            return []
        newest_first = qs.order_by("-run__depth", "-position")
        page = newest_first[offset:offset + limit] if limit is not None else newest_first[offset:]
        return [_to_memory(m) for m in reversed(list(page))]

    def filter(self, *, metadata=None, since=None, until=None, roles=None, limit=None) -> list[MemoryMessage]:
        qs = self._scope()
        since, until = _parse_dt(since), _parse_dt(until)
        if since is not None:
            qs = qs.filter(created_at__gte=since)
        if until is not None:
            qs = qs.filter(created_at__lt=until)
        if roles is not None:
            qs = qs.filter(role__in=check_roles(roles))
        for index, (key, value) in enumerate((metadata or {}).items()):
            alias = f"_meta_{index}"
            qs = qs.alias(**{alias: KeyTransform(str(key), "metadata")}).filter(
                Q(**{alias: value}) if value is not None else Q(**{"metadata__has_key": str(key), alias: None}),
            )
        if limit is not None:
            check_page(limit, 0)
            return [_to_memory(m) for m in reversed(list(qs.order_by("-run__depth", "-position")[:limit]))]
        return [_to_memory(m) for m in qs]

    def search_scored(self, query: str, top_k: int = 5) -> list[tuple[MemoryMessage, float]]:
        """With an ``embedder``: cosine similarity over the stored vectors (:mod:`memory.semantic`,
        computed once per message). Without one: PostgreSQL full-text search (``websearch_to_tsquery``
        ranked by ``ts_rank``) on PostgreSQL, BM25 in Python on SQLite — and BM25 in Python on
        decrypted text when encryption at rest is on (the database only holds ciphertext)."""
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError("top_k must be a non-negative integer")
        if top_k == 0 or not (query or "").strip():
            return []
        scope = self._scope().exclude(content="") if not encryption_enabled() else self._scope()
        if self.embedder is not None:
            ranked = rank_messages(scope.select_related("run__session"), query, top_k, embedder=self.embedder)
            return [(_to_memory(m), score) for m, score in ranked]
        if connection.vendor == "postgresql" and not encryption_enabled():
            found = scope.matching(query, ranked=True).order_by("-rank", "-run__depth", "-position")[:top_k]
            return [(_to_memory(m), float(m.rank)) for m in found]
        return bm25_rank(query, [m for m in self._all() if m.content], top_k)

