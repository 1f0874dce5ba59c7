"""The sessions list and the actions on a session: new, rename, delete with undo, restore, pin."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from core.errors import InvalidInput
from core.fields import encryption_enabled
from core.refusals import answers_refusals
from core.text import clean_text

from .. import services
from ..models import Session
from ..selectors import get_session_for, pages
from ..selectors.ownership import get_restorable_session_for, recently_deleted
from .common import after, current_id, is_partial, sidebar, title_of, to_session_list

SESSIONS_PER_PAGE = 50


@require_GET
def session_list(request: HttpRequest) -> HttpResponse:
    """Sessions, newest activity first, with run and branch counts; ``?q=`` searches titles and
    messages; recently deleted sessions can be restored for ARBOR_UNDO_DELETE_SECONDS."""
    query, refused = _search_query(request)
    if is_partial(request) and request.htmx.target == "side-results":
        return render(request, "conversations/_sessions_sidebar.html#side_results",
                      sidebar(request, current_id(request), query))
    page = Paginator(pages.listed_sessions(request.user, query), SESSIONS_PER_PAGE).get_page(request.GET.get("page"))
    deleted = recently_deleted(request.user)
    search_note = ("Message text is encrypted at rest, so search looks at titles only (semantic search under "
                   "“Search memory” still reads messages).") if query and encryption_enabled() else ""
    context = {"page": page, "query": query, "deleted": deleted, "search_note": refused or search_note}
    if is_partial(request) and request.htmx.target == "results":
        return render(request, "conversations/session_list.html#results", context, status=400 if refused else 200)
    return render(request, "conversations/session_list.html", context, status=400 if refused else 200)


def _search_query(request: HttpRequest) -> tuple[str, str]:
    """``?q=`` through core.text.clean_text: ``(query, "")``, or ``("", why)`` when it is refused
    (a control character such as NUL, over 1000 characters): the page then lists without a search."""
    try:
        return clean_text(request.GET.get("q", ""), field="The search", max_length=1000, required=False), ""
    except InvalidInput as exc:
        return "", f"{exc.message}; showing every session."


@require_POST
@answers_refusals(back=to_session_list)
def session_new(request: HttpRequest) -> HttpResponse:
    session = services.session_create(owner=request.user, title=request.POST.get("title", ""))
    return redirect("conversations:session_detail", session_id=session.pk)


def _row(request, session: Session) -> HttpResponse:
    """A session's row as the place that asked shows it: the sidebar (``place=sidebar``) or the list."""
    if request.POST.get("place") == "sidebar":
        return render(request, "conversations/_sessions_sidebar.html#srow",
                      {"s": session, "current_id": current_id(request)})
    return render(request, "conversations/session_list.html#row", {"s": pages.listed_session(session)})



@require_POST
@answers_refusals(back=to_session_list)
def session_rename(request: HttpRequest, session_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    services.session_rename(session=session, title=request.POST.get("title", ""))
    if is_partial(request):
        renamed = {"id": str(session.pk), "title": session.title}
        if request.POST.get("place") == "head":  # the chat's own title: nothing to swap, app.js updates it
            return after(HttpResponse(status=204), say=f"Renamed to “{session.title}”.", focus="#session-title",
                         swapped=False, renamed=renamed)
        return after(_row(request, session), say=f"Renamed to “{session.title}”.",
                     focus=f"#srow-{session.pk} .stitle, #session-{session.pk} .title", renamed=renamed)
    if request.POST.get("next") == "chat":
        return redirect("conversations:session_detail", session_id=session.pk)
    return redirect("conversations:session_list")


@require_POST
def session_delete(request: HttpRequest, session_id) -> HttpResponse:
    """Soft-delete; the owner can undo it for ARBOR_UNDO_DELETE_SECONDS (then it stays hidden)."""
    session = get_session_for(request.user, session_id)
    services.session_delete(session=session)
    if is_partial(request):
        seconds = settings.ARBOR_UNDO_DELETE_SECONDS
        if request.POST.get("place") == "sidebar":
            response = render(request, "conversations/_sessions_sidebar.html#sdeleted",
                              {"s": session, "current_id": current_id(request)})
        else:
            response = render(request, "conversations/session_list.html#deleted_row", {"s": session})
        return after(response, say=f"Deleted “{title_of(session)}”. Undo is possible for {seconds} seconds.",
                     focus=f"#srow-{session.pk} button, #session-{session.pk} button")
    flash.info(request, f"Deleted “{session}”. You can undo this below for a while.")
    return redirect("conversations:session_list")


@require_POST
def session_restore(request: HttpRequest, session_id) -> HttpResponse:
    session = get_restorable_session_for(request.user, session_id)
    if session is None:
        raise Http404("Nothing to restore: no such session, or its undo time has passed.")
    services.session_restore(session=session)
    if is_partial(request):
        return after(_row(request, session), say=f"Restored “{title_of(session)}”.",
                     focus=f"#srow-{session.pk} .stitle, #session-{session.pk} .title")
    return redirect("conversations:session_list")





@require_POST
def session_pin(request: HttpRequest, session_id) -> HttpResponse:
    """Pin a session to the top of the sidebar (``pinned=1``) or unpin it: the sidebar's list again."""
    session = get_session_for(request.user, session_id)
    services.session_pin(session=session, pinned=request.POST.get("pinned") == "1")
    if not is_partial(request):
        current = current_id(request)
        if current is not None:
            return redirect("conversations:session_detail", session_id=current)
        return redirect("conversations:session_list")
    say = f"Pinned “{title_of(session)}”." if session.pinned_at else f"Unpinned “{title_of(session)}”."
    side = sidebar(request, current_id(request))
    return after(render(request, "conversations/_sessions_sidebar.html#side_results", side),
                 say=say, focus=f"#srow-{session.pk} .pin")
