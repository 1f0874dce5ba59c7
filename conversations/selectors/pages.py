"""Page assembly reads: the previews of the runs a page shows (one query), the sessions list's
counts and its search, the fork source, and the agents and models the composer offers."""

from __future__ import annotations

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Substr

from connections.selectors import pickable_models
from core.fields import encryption_enabled
from core.ids import as_uuid
from memory.models import Agent

from ..models import Message, Run, Session
from .trees import Item


def run_previews(run_ids, length: int = 90) -> dict:
    """``{run_id (UUID): (status, model, depth, preview)}`` of the runs ``run_ids``: the preview is
    the first ``length`` characters of the run's input, whitespace folded (one query; none for no
    ids). Cut in SQL, or after decryption when message text is encrypted at rest."""
    run_ids = list(run_ids)
    if not run_ids:
        return {}
    if encryption_enabled():  # ciphertext cannot be cut in SQL: decrypt (via the field), then cut
        inputs = dict(Message.objects.filter(run_id__in=run_ids, position=0).values_list("run_id", "content"))
        rows = [(run_id, status, model, depth, (inputs.get(run_id) or "")[:length]) for run_id, status, model, depth
                in Run.objects.filter(pk__in=run_ids).values_list("id", "status", "model", "depth")]
    else:
        rows = Run.objects.filter(pk__in=run_ids).annotate(
            p=Subquery(Message.objects.filter(run=OuterRef("pk"), position=0).annotate(p=Substr("content", 1, length))
                       .values("p")[:1])
        ).values_list("id", "status", "model", "depth", "p")
    return {run_id: (status, model, depth, " ".join((preview or "").split()))
            for run_id, status, model, depth, preview in rows}


def attach_previews(items: list[Item], length: int = 90, *, also=()) -> dict:
    """Fill in status, model, depth and preview (the first ``length`` characters of the input) of
    the runs the items show (one query). ``also``: more run ids to read in the same query; returns
    :func:`run_previews` of them all."""
    nodes = {}
    for item in items:
        if item.node is not None:
            nodes[item.node.uid] = item.node
    facts = run_previews({*nodes, *also}, length)
    for run_id, node in nodes.items():
        if run_id in facts:
            node.status, node.model, node.depth, node.preview = facts[run_id]
    return facts


def with_counts(sessions):
    """Annotate ``run_count`` and ``branch_count`` (leaf runs: runs with no child in the session);
    pruned runs are not counted."""
    own = Run.objects.unpruned()
    runs = own.filter(session=OuterRef("pk")).order_by().values("session").annotate(c=Count("pk")).values("c")
    leaves = (
        own.filter(session=OuterRef("pk"))
        .filter(~Exists(own.filter(parent_run=OuterRef("pk"), session=OuterRef("session"))))
        .order_by().values("session").annotate(c=Count("pk")).values("c")
    )
    return sessions.annotate(run_count=Subquery(runs), branch_count=Subquery(leaves))


def search_sessions(sessions, query: str):
    """Sessions whose title or any of whose messages (pruned runs' left out) match ``query``.

    PostgreSQL: full-text search (``websearch_to_tsquery`` against ``to_tsvector('english', …)``
    via django.contrib.postgres.search; the messages side is served by the GIN index
    ``message_content_fts``), plus a substring match on the title. SQLite: every word must occur
    (case-insensitively) in the title or in a message.
    """
    query = " ".join((query or "").split())[:200]
    if not query:
        return sessions
    if encryption_enabled():  # message text is ciphertext in the database: titles only
        for word in query.split()[:8]:
            sessions = sessions.filter(title__icontains=word)
        return sessions
    if connection.vendor == "postgresql":
        tsquery = SearchQuery(query, config="english", search_type="websearch")
        message_hits = Message.objects.filter(run__pruned_by__isnull=True).matching(query).values("run__session_id")
        return sessions.annotate(title_v=SearchVector("title", config="english")).filter(
            Q(title_v=tsquery) | Q(title__icontains=query) | Q(pk__in=message_hits)
        )
    for word in query.split()[:8]:
        message_hits = Message.objects.filter(content__icontains=word, run__pruned_by__isnull=True).values(
            "run__session_id")
        sessions = sessions.filter(Q(title__icontains=word) | Q(pk__in=message_hits))
    return sessions


# --- the sessions list and the sidebar -----------------------------------------------------------

def sidebar_sessions(user, query: str, limit: int, *, pinned_first: bool = False) -> list[Session]:
    """The user's newest ``limit + 1`` live sessions matching ``query`` (:func:`search_sessions`),
    pinned ones first when ``pinned_first`` (newest pin first), only ``pk``, ``title``,
    ``updated_at`` and ``pinned_at`` read: the sidebar shows ``limit`` and "more" when there is one more."""
    sessions = search_sessions(Session.objects.alive().owned_by(user), query)
    order = [F("pinned_at").desc(nulls_last=True)] if pinned_first else []
    sessions = sessions.order_by(*order, "-updated_at", "pk").only("pk", "title", "updated_at", "pinned_at")
    return list(sessions[:limit + 1])


def listed_sessions(user, query: str):
    """The sessions list: the user's live sessions matching ``query``, with their counts
    (:func:`with_counts`), newest first: a QuerySet to paginate."""
    return with_counts(search_sessions(Session.objects.alive().owned_by(user), query)).order_by("-updated_at", "pk")


def listed_session(session: Session) -> Session:
    """One session as a row of the sessions list (with its counts)."""
    return with_counts(Session.objects.filter(pk=session.pk)).get()


def fork_source(session: Session) -> Run | None:
    """The run a fork continues from, its session selected (None for a session that is no fork)."""
    if not session.forked_from_run_id:
        return None
    return Run.objects.select_related("session").filter(pk=session.forked_from_run_id).first()


def depth_of(run_id) -> int | None:
    """The depth of run ``run_id`` (any id form; None when malformed or no such run)."""
    try:
        pk = as_uuid(run_id)
    except ValueError:
        return None
    return Run.objects.filter(pk=pk).values_list("depth", flat=True).first()


# --- who may answer: the composer's picker -------------------------------------------------------

def pickable_agents(user):
    """The agents ``user`` may pick (their own and the shared ones): a QuerySet."""
    return Agent.objects.pickable_by(user)


def picked_agent(user, agent_id: int) -> Agent | None:
    """The pickable agent ``agent_id`` of ``user``, or None."""
    return pickable_agents(user).filter(pk=agent_id).first()


def picked_model(user, model_id: int):
    """The pickable model (a :class:`connections.models.ConnectionModel`) ``model_id`` of ``user``, or None."""
    return pickable_models(user).filter(pk=model_id).first()
