"""Pages of the branch tools: a session's branches page (labels, share links, pruned
subtrees to undo), naming a run, the branch diff, prune and undo, share links and the shared branch
itself (read-only, no login). URLs in :mod:`branches.urls` (namespace ``branches``).

Every view looks its objects up through :mod:`conversations.selectors` and
:mod:`branches.selectors` (another user's session, run, label or share: the site's 404 page).
Forms are plain POSTs that redirect (they work without JavaScript); a refused action comes back as
a flash message (:func:`core.refusals.answers_refusals`).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from conversations.models import Session
from conversations.selectors import get_branch_run_for, get_session_for
from conversations.selectors.paths import is_on_branch, newest_leaf_below
from core.errors import InvalidInput
from core.refusals import answers_refusals

from . import selectors, services


def _chat_url(session_id, run_id=None) -> str:
    url = reverse("conversations:session_detail", kwargs={"session_id": session_id})
    return f"{url}?at={run_id}#turn-{run_id}" if run_id else url


def _page_url(session_id, anchor: str = "") -> str:
    url = reverse("branches:page", kwargs={"session_id": session_id})
    return f"{url}#{anchor}" if anchor else url


def _back_url(request, session_id, run_id=None, anchor: str = "") -> str:
    """Back where the form was: the branches page (``next=branches``) or the chat at ``run_id``."""
    if request.POST.get("next") == "branches":
        return _page_url(session_id, anchor)
    return _chat_url(session_id, run_id)


def _back(request, session: Session, run_id=None, anchor: str = "") -> HttpResponse:
    return redirect(_back_url(request, session.pk, run_id, anchor))


def _back_to_labels(request, session_id, **_) -> str:
    """Where a refused label form goes back to (:func:`core.refusals.answers_refusals`)."""
    return _back_url(request, session_id, anchor="labels")


def _back_to_pruned(request, session_id, **_) -> str:
    return _back_url(request, session_id, anchor="pruned")


# --- the branches page ----------------------------------------------------------------------------

@require_GET
def branches_page(request: HttpRequest, session_id) -> HttpResponse:
    """The session's named branches (open, rename, delete, diff two of them), its share links
    (copy, revoke) and the subtrees pruned in the last ``ARBOR_UNDO_DELETE_SECONDS`` (undo)."""
    session = get_session_for(request.user, session_id)
    shares = selectors.shares_of(session)
    for share in shares:
        link = reverse("branches:shared", kwargs={"token": selectors.share_token(share)})
        share.url = request.build_absolute_uri(link)
    context = {
        "session": session, "labels": list(selectors.labels_of(session)), "shares": shares,
        "prunes": list(selectors.undoable_prunes(session)), "expiry_days": selectors.SHARE_EXPIRY_DAYS,
    }
    return render(request, "conversations/branches/page.html", context)


# --- labels ---------------------------------------------------------------------------------------

@require_POST
@answers_refusals(back=_back_url)
def label_create(request: HttpRequest, session_id, run_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    run = get_branch_run_for(request.user, session, run_id)
    label = services.label_create(session=session, run=run, name=request.POST.get("name", ""))
    flash.success(request, f"Labelled turn {run.depth + 1} “{label.name}”.")
    return _back(request, session, run.pk, anchor="labels")


@require_POST
@answers_refusals(back=_back_to_labels)
def label_rename(request: HttpRequest, session_id, label_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    label = selectors.get_label_for(request.user, session, label_id)
    services.label_rename(label=label, name=request.POST.get("name", ""))
    return _back(request, session, label.run_id, anchor="labels")


@require_POST
def label_delete(request: HttpRequest, session_id, label_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    label = selectors.get_label_for(request.user, session, label_id)
    run_id = label.run_id
    services.label_delete(label=label)
    flash.info(request, f"Deleted the label “{label.name}” (the turns are untouched).")
    return _back(request, session, run_id, anchor="labels")


# --- the branch diff ------------------------------------------------------------------------------

def _diff_choices(session: Session) -> list[tuple[str, str]]:
    """``(run id, text)`` for the diff's pickers: the branch shown, then every labelled run, each
    run once (a run's labels, and "shown in the chat", share its one entry)."""
    choices: dict[str, str] = {}
    if session.active_run_id:
        choices[str(session.active_run_id)] = "The branch shown in the chat"
    for label in selectors.labels_of(session):
        key, text = str(label.run_id), f"{label.name} (turn {label.run.depth + 1})"
        choices[key] = f"{choices[key]} · {text}" if key in choices else text
    return list(choices.items())


@require_GET
def diff_page(request: HttpRequest, session_id) -> HttpResponse:
    """``?a=<run_id>&b=<run_id>``: the branches ending at two runs of the session's tree side by
    side from their common ancestor (:func:`conversations.selectors.branch_diff`); without both, the
    pickers only (the branch shown and the labels)."""
    session = get_session_for(request.user, session_id)
    a_id, b_id = request.GET.get("a", ""), request.GET.get("b", "")
    context = {"session": session, "choices": _diff_choices(session), "a_id": a_id, "b_id": b_id, "result": None}
    if a_id and b_id:
        a = get_branch_run_for(request.user, session, a_id)
        b = get_branch_run_for(request.user, session, b_id)
        context["result"] = selectors.branch_diff(a, b)
        values = {value for value, _ in context["choices"]}
        context["a_extra"] = a if str(a.pk) not in values else None
        context["b_extra"] = b if str(b.pk) not in values else None
        labels = selectors.labels_by_run(session)
        context["a_labels"], context["b_labels"] = labels.get(a.pk, []), labels.get(b.pk, [])
    return render(request, "conversations/branches/diff.html", context)


@require_GET
def versions_diff(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """From the sibling navigator: the diff of the branch shown (through ``run_id``) with the branch
    of another version of that turn (``?other=<run_id>``: its newest leaf)."""
    session = get_session_for(request.user, session_id)
    run = get_branch_run_for(request.user, session, run_id)
    other = get_branch_run_for(request.user, session, request.GET.get("other", ""))
    a = session.active_run if session.active_run_id else run
    if not is_on_branch(run, a):
        a = newest_leaf_below(session, run)
    b = newest_leaf_below(session, other)
    return redirect(reverse("branches:diff", kwargs={"session_id": session.pk}) + f"?a={a.pk}&b={b.pk}")


# --- prune ----------------------------------------------------------------------------------------

@require_POST
@answers_refusals(back=_back_url)
def prune(request: HttpRequest, session_id, run_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    run = get_branch_run_for(request.user, session, run_id)
    done = services.prune_subtree(session=session, run=run)
    minutes = max(1, settings.ARBOR_UNDO_DELETE_SECONDS // 60)
    flash.info(request, f"Pruned {done.run_count} run{'s' if done.run_count != 1 else ''} from turn "
                        f"{run.depth + 1} down. You can undo this for {minutes} minutes (“Recently pruned”).")
    return _back(request, session, run.parent_run_id if run.parent_run_id else None, anchor="pruned")


@require_POST
@answers_refusals(back=_back_to_pruned)
def prune_undo(request: HttpRequest, session_id, prune_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    pruned = selectors.get_prune_for(request.user, session, prune_id)
    services.prune_undo(prune=pruned)
    flash.success(request, f"Restored {pruned.run_count} run{'s' if pruned.run_count != 1 else ''}.")
    return _back(request, session, pruned.run_id, anchor="pruned")


# --- shares ---------------------------------------------------------------------------------------

def _expiry(request) -> int | None:
    value = (request.POST.get("expires_in_days") or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("expires_in_days must be a whole number of days") from None


@require_POST
@answers_refusals(back=lambda request, session_id, run_id: _chat_url(session_id, run_id))
def share_create(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Make a read-only link to the branch ending at this run; the branches page lists it."""
    session = get_session_for(request.user, session_id)
    run = get_branch_run_for(request.user, session, run_id)
    share = services.share_create(session=session, run=run, expires_in_days=_expiry(request))
    flash.success(request, f"Made a read-only link to the branch up to turn {run.depth + 1}; copy it below.")
    return redirect(_page_url(session.pk, f"share-{share.pk}"))


@require_POST
def share_revoke(request: HttpRequest, session_id, share_id) -> HttpResponse:
    session = get_session_for(request.user, session_id)
    share = selectors.get_share_for(request.user, session, share_id)
    services.share_revoke(share=share)
    flash.info(request, "Revoked: that link now answers “not found”.")
    return redirect(_page_url(session.pk, "shares"))


@login_not_required
@require_GET
def shared_branch(request: HttpRequest, token: str) -> HttpResponse:
    """The shared branch, read-only, for anyone with the link (no login): the turns from the root
    to the shared run, user inputs and answers only. A wrong, revoked or expired token (or a
    deleted session, a pruned run) is the site's 404 page."""
    share = selectors.share_from_token(token)
    context = {"share": share, "title": share.session.title, "turns": selectors.shared_turns(share)}
    response = render(request, "conversations/branches/shared.html", context)
    response["Referrer-Policy"] = "no-referrer"  # the token must not leak through links in answers
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "private, no-store"
    return response
