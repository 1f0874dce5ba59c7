"""Pages of fan-out, fuse and merge. Actions in :mod:`merges.services`, reads in
:mod:`merges.selectors`; the chat shows the results (``conversations/merges/*`` templates)."""

from __future__ import annotations

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.ratelimit import limit_run_creation
from conversations.models import ACTIVE_STATUSES
from conversations.selectors import get_branch_run_for, get_session_for, pages
from core.errors import ArborError, NotFound
from core.refusals import answers_refusals

from . import forms, selectors, services


def _chat(session, run=None) -> str:
    url = reverse("conversations:session_detail", kwargs={"session_id": session.pk})
    return url + (f"?at={run.pk}#turn-{run.pk}" if run is not None else "")


def _done(request, url: str) -> HttpResponse:
    """htmx: a full navigation to ``url`` (``HX-Redirect``); else a redirect."""
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def _back_to_chat(request, session_id, run_id=None) -> str:
    """Where a refused form goes back to (:func:`core.refusals.answers_refusals`): the chat."""
    url = reverse("conversations:session_detail", kwargs={"session_id": session_id})
    return url + (f"?at={run_id}#turn-{run_id}" if run_id is not None else "")


@require_POST
@limit_run_creation
@answers_refusals(back=_back_to_chat)
def fan_out(request: HttpRequest, session_id) -> HttpResponse:
    """The composer's "Ask all": one sibling run per picked model, agent or connection (2–4)."""
    session = get_session_for(request.user, session_id)
    variants = [forms.variant_from(request.user, value) for value in request.POST.getlist("variant")]
    group = services.fan_out(session=session, input=request.POST.get("input", ""), variants=variants)
    return _done(request, _chat(session, group.started[0]))


@require_GET
def fan_column(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """One column of a fan-out (what a column swaps in when its stream ends)."""
    session = get_session_for(request.user, session_id)
    run = get_branch_run_for(request.user, session, run_id)
    context = {"session": session, "col": selectors.fan_out_column(run), "shown_id": None,
               "active_statuses": ACTIVE_STATUSES}
    return render(request, "conversations/merges/_fan_col.html", context)


@require_GET
def fuse_dialog(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """The "Fuse answers…" dialog of a turn with versions (‹ k/n ›): tick 2 or more finished
    versions, pick who writes the fused answer, edit the instruction."""
    session = get_session_for(request.user, session_id)
    run = get_branch_run_for(request.user, session, run_id)
    context = {"session": session, "run": run, "candidates": selectors.fuse_candidates(run),
               "agents": pages.pickable_agents(request.user), "instruction": services.DEFAULT_FUSE_INSTRUCTION}
    return render(request, "conversations/merges/fuse.html", context)


@require_POST
@limit_run_creation
@answers_refusals(back=_back_to_chat)
def fuse(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """The fuse form (under a fan-out, or the dialog of a turn with versions): a new sibling fused
    from the picked answers."""
    session = get_session_for(request.user, session_id)
    run = get_branch_run_for(request.user, session, run_id)
    fused = services.fuse(session=session, run=run, source_ids=forms.run_ids(request.POST.getlist("source"), "source"),
                          agent=forms.optional_agent(request.user, request.POST.get("agent_id", "")),
                          instruction=request.POST.get("instruction"))
    flash.info(request, f"Fusing {len(request.POST.getlist('source'))} answers into a new version of turn "
                        f"{fused.depth + 1}.")
    return _done(request, _chat(session, fused))


def _plan(request, session, target, data):
    """The merge plan the dialog's fields describe, or None before a source (and, in digest mode,
    a digest) is there."""
    if not data.get("source"):
        return None
    source = get_branch_run_for(request.user, session, data.get("source"))
    mode = data.get("mode") or "turns"
    chosen = forms.run_ids(data.getlist("turn"), "turn") if mode == "turns" and data.getlist("turn") else None
    digest = data.get("digest") if mode == "digest" and (data.get("digest") or "").strip() else None
    if mode == "digest" and digest is None:
        return None
    return services.merge_plan(session=session, target=target, source=source, mode=mode, run_ids=chosen,
                               digest=digest)


def _draft(session, data, context: dict) -> None:
    """The dialog's digest draft (``draft_run``): its run while it is going (the page follows its
    stream), its answer once it has finished (``drafted``, the textarea's text)."""
    draft = services.digest_draft_for(session, forms.run_ids([data.get("draft_run")], "draft_run")[0])
    context["draft"] = draft
    if draft.run.status not in ACTIVE_STATUSES:
        context["drafted"] = services.digest_draft_text(draft)


@require_http_methods(["GET", "POST"])
def merge(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """The merge dialog: pick the source branch, turns or a digest (drafted by an agent in a run the
    dialog follows, then editable), preview the exact messages and their tokens (GET), confirm (POST)."""
    session = get_session_for(request.user, session_id)
    target = get_branch_run_for(request.user, session, run_id)
    data = request.POST if request.method == "POST" else request.GET
    context = {"session": session, "target": target, "sources": selectors.merge_sources(session, target),
               "agents": pages.pickable_agents(request.user), "data": data, "mode": data.get("mode") or "turns",
               "picked": set(data.getlist("turn")), "active_statuses": ACTIVE_STATUSES}
    try:
        if data.get("source"):
            source = get_branch_run_for(request.user, session, data.get("source"))
            context.update(source=source, turns=selectors.branch_turns(target, source))
        if data.get("draft_run"):
            _draft(session, data, context)
        plan = _plan(request, session, target, data)
        if request.method == "POST" and plan is not None:
            run = services.merge_create(session=session, plan=plan)
            flash.info(request, f"Merged {len(plan.carried)} turn(s) as a new turn {run.depth + 1}. "
                                "Undo is on the merge turn for a while.")
            return redirect(_chat(session, run))
    except ArborError as exc:
        if isinstance(exc, NotFound) and request.method == "GET" and not data.get("source"):
            raise
        context["error"] = exc.message
        plan = None
    context["plan"] = plan
    return render(request, "conversations/merges/merge.html", context, status=400 if context.get("error") else 200)


@require_POST
@limit_run_creation
@answers_refusals(back=_back_to_chat)
def digest_draft(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """The dialog's "Draft a digest": an agent drafts it in a run (a worker executes it); back to the
    dialog, which follows the run and then shows the draft, editable."""
    session = get_session_for(request.user, session_id)
    target = get_branch_run_for(request.user, session, run_id)
    source = get_branch_run_for(request.user, session, request.POST.get("source"))
    agent_id = request.POST.get("agent_id", "")
    draft = services.digest_draft_start(session=session, target=target, source=source,
                                        agent=forms.optional_agent(request.user, agent_id))
    query = urlencode({"source": source.pk, "mode": "digest", "agent_id": agent_id, "draft_run": draft.run_id})
    return _done(request, reverse("merges:merge", kwargs={"session_id": session.pk, "run_id": target.pk}) + "?" + query)


@require_POST
@answers_refusals(back=_back_to_chat)
def merge_undo(request: HttpRequest, session_id, run_id) -> HttpResponse:
    """Undo a merge (within the undo time): the merge turn is pruned and the target shown again."""
    session = get_session_for(request.user, session_id)
    run = get_branch_run_for(request.user, session, run_id)
    services.merge_undo(session=session, run=run)
    flash.info(request, f"Undid the merge of turn {run.depth + 1}.")
    return _done(request, _chat(session, run.parent_run))
