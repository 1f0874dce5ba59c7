"""Reads with ownership: the one place that decides which sessions and runs a user may see.

Every page, the JSON API and the SSE streams look objects up through these functions, so another
user's object answers the same 404 everywhere. They raise :class:`core.errors.NotFound` (an
:class:`~core.errors.ArborError` with status 404), never Http404: each caller turns it into its
own 404 (JSON for the API, HTML for pages).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from core.errors import NotFound
from core.ids import parse_id

from ..models import Run, Session


def undo_cutoff() -> datetime:
    """The oldest moment a soft delete (a session, a pruned subtree) may still be undone:
    ``ARBOR_UNDO_DELETE_SECONDS`` (600) ago. Older deletes stay hidden for good."""
    return timezone.now() - timedelta(seconds=settings.ARBOR_UNDO_DELETE_SECONDS)


def get_session_for(user, session_id) -> Session:
    """A live (not deleted) session owned by ``user``; NotFound otherwise (also for a malformed id)."""
    session = Session.objects.alive().filter(pk=parse_id(session_id, "session"), owner=user).first()
    if session is None:
        raise NotFound(f"No session with id {session_id}.")
    return session


def get_run_for(user, run_id) -> Run:
    """A run of one of ``user``'s sessions (a deleted source session's runs stay readable for forks)."""
    run = Run.objects.select_related("session").filter(pk=parse_id(run_id, "run"), session__owner=user).first()
    if run is None:
        raise NotFound(f"No run with id {run_id}.")
    return run


def get_branch_run_for(user, session: Session, run_id) -> Run:
    """A run of ``session``'s tree (its own or, for a fork, a shared ancestor) owned by ``user``.

    ``session`` is a live session already looked up for ``user``. Raises NotFound otherwise, also
    for a malformed id."""
    run = get_run_for(user, run_id)
    if not session.can_branch_from(run):
        raise NotFound("That run is not part of this session.")
    return run


def get_run_to_act_on(user, run_id, session_id=None) -> tuple[Session, Run]:
    """The one rule for acting on a run (edit, regenerate, fork): ``(session, run)`` where
    ``session`` is the live session of ``user`` the action happens in (``session_id`` when given,
    e.g. a fork acting on a shared ancestor; else the run's own session) and ``run`` is in its tree.

    Raises NotFound when the run is not ``user``'s, that session is deleted or not ``user``'s, or
    the run is not part of it: a run of a deleted session is 404 for every action."""
    run = get_run_for(user, run_id)
    session = get_session_for(user, session_id if session_id else run.session_id)
    return session, get_branch_run_for(user, session, run.pk)


def recently_deleted(user, limit: int = 10) -> list[Session]:
    """The user's sessions deleted within the undo time, newest delete first (at most ``limit``)."""
    return list(Session.objects.owned_by(user).filter(deleted_at__gte=undo_cutoff()).order_by("-deleted_at")[:limit])


def get_restorable_session_for(user, session_id) -> Session | None:
    """``user``'s session ``session_id`` when it was deleted within the undo time, else None."""
    return Session.objects.owned_by(user).filter(pk=session_id, deleted_at__gte=undo_cutoff()).first()


def sessions_of(user):
    """``user``'s live sessions, most recently active first: a QuerySet (the API paginates it)."""
    return Session.objects.alive().owned_by(user).order_by("-updated_at")
