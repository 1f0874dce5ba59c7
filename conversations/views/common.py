"""What the conversations pages share: the run lookup of a session's tree, where a refused
action goes back to, the htmx after-swap instructions, the sessions sidebar."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone

from core import ids

from ..models import Run, Session
from ..selectors import get_branch_run_for, pages

SIDEBAR_SESSIONS = 40  # sessions listed in the chat's sidebar (newest first); the list page has them all


def branch_run(request, session: Session, run_id) -> Run:
    """A run of ``session``'s tree owned by the user (:func:`selectors.get_branch_run_for`)."""
    return get_branch_run_for(request.user, session, run_id)


def is_partial(request) -> bool:
    return bool(request.htmx) and not request.htmx.boosted


def to_chat(request, session_id, **_) -> str:
    """Where a refused action on a session goes back to (:func:`core.refusals.answers_refusals`): its chat."""
    return reverse("conversations:session_detail", kwargs={"session_id": session_id})


def to_session_list(request, **_) -> str:
    """Where a refused action on the sessions list goes back to: the list."""
    return reverse("conversations:session_list")


def after(response: HttpResponse, *, say: str = "", focus: str = "", swapped: bool = True, **extra) -> HttpResponse:
    """Tell app.js what to do once htmx has swapped ``response`` in: move focus to ``focus`` (a CSS
    selector) and announce ``say`` in the page's aria-live region; ``extra`` rides along (e.g.
    ``renamed={"id", "title"}``). ``swapped=False`` for a response that swaps nothing (204)."""
    detail = {"say": say, "focus": focus, **extra}
    header = "HX-Trigger-After-Settle" if swapped else "HX-Trigger"
    response[header] = json.dumps({"arbor:after": detail})
    return response


def sidebar(request, current=None, query: str = "") -> dict:
    """The sessions sidebar's context: the user's newest SIDEBAR_SESSIONS sessions (``query``
    searches them as the list page does), whether there are more, and the current session's id."""
    rows = pages.sidebar_sessions(request.user, query, SIDEBAR_SESSIONS, pinned_first=settings.ARBOR_CHAT_PINS)
    more, rows = len(rows) > SIDEBAR_SESSIONS, rows[:SIDEBAR_SESSIONS]
    today = timezone.localdate()
    for row in rows:
        row.side_group = _side_group(row, today)
    return {"side_sessions": rows, "side_more": more, "current_id": current, "query": query}


def _side_group(session: Session, today) -> str:
    """The sidebar's group of a session: Pinned, else by its last activity (Today, Yesterday,
    Previous 7 days, Previous 30 days, the month and year) when ARBOR_CHAT_DATE_GROUPS is on."""
    if session.pinned_at is not None and settings.ARBOR_CHAT_PINS:
        return "Pinned"
    if not settings.ARBOR_CHAT_DATE_GROUPS:
        return ""
    day = timezone.localtime(session.updated_at).date()
    age = (today - day).days
    if age <= 0:
        return "Today"
    if age == 1:
        return "Yesterday"
    if age < 7:
        return "Previous 7 days"
    if age < 30:
        return "Previous 30 days"
    return day.strftime("%B %Y")


def current_id(request):
    """The ``current`` session id a sidebar form sends (None when absent or malformed)."""
    try:
        return ids.as_uuid((request.POST.get("current") or request.GET.get("current") or "").strip() or None)
    except ValueError:
        return None



def title_of(session: Session) -> str:
    return session.title or "Untitled session"

