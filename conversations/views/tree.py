"""The tree view of a session (lazy subtrees, elided straight stretches) and its tree map."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .. import treemap
from ..selectors import get_session_for, pages, runs, trees
from .common import is_partial, sidebar

TREE_BUDGET = 300  # runs shown by the tree view before subtrees become "show more" links


@require_GET
def session_tree(request: HttpRequest, session_id) -> HttpResponse:
    """The session as a tree. ``?root=<run_id>``: only the subtree below that run (how a "show
    more" link loads); ``?chain=<run_id>&n=<count>``: an elided straight stretch of runs."""
    session = get_session_for(request.user, session_id)
    skeleton = trees.tree_skeleton(session)
    root_id, chain_id = request.GET.get("root"), request.GET.get("chain")
    mode = "tree"
    try:
        if chain_id:
            start = skeleton.get(chain_id)
            if start is None:
                raise Http404("No such run in this session.")
            count = max(1, min(int(request.GET.get("n", "1")), 100_000))
            items, mode = trees.chain_items(start, count), "chain"
        elif root_id:
            start = skeleton.get(root_id)
            if start is None:
                raise Http404("No such run in this session.")
            items, mode = trees.plan_tree([start], budget=TREE_BUDGET), "subtree"
        else:
            items = trees.plan_tree(skeleton.roots, budget=TREE_BUDGET)
    except ValueError:
        raise Http404("No such run in this session.") from None
    links = runs.provenance_edges(session) if mode == "tree" else []
    plan = treemap.plan_map(skeleton, _ids(request, "expand"), _ids(request, "unfold"), links=links) \
        if mode == "tree" else None
    facts = pages.attach_previews(items, also=treemap.drawn_ids(plan))  # one query for the list and the map
    source = pages.fork_source(session)
    context = {
        "session": session, "items": items, "mode": mode, "run_count": len(skeleton.nodes),
        "source_run": source, "source_alive": bool(source and source.session.deleted_at is None),
        "map": (treemap.render_svg(skeleton, plan, facts, trees.branch_names(session), links)
                if plan is not None else None),
    }
    if is_partial(request) and mode != "tree":
        return render(request, "conversations/tree.html#items", context)
    return render(request, "conversations/tree.html", {**context, **sidebar(request, session.pk)})


def _ids(request, name: str) -> list[str]:
    """Run ids of ``?<name>=<id>,<id>,…`` (at most 200; unknown or malformed ones are ignored)."""
    return [part for part in request.GET.get(name, "").split(",") if part.strip()][:200]


@require_GET
def session_tree_map(request: HttpRequest, session_id) -> HttpResponse:
    """The tree map alone (the fragment the map swaps in when a collapsed stretch or a folded
    subtree is expanded): ``?expand=<run id>,…`` names the runs below collapsed stretches to draw in
    full, ``?unfold=<run id>,…`` the runs whose folded children to draw. See
    :mod:`conversations.treemap`."""
    session = get_session_for(request.user, session_id)
    skeleton = trees.tree_skeleton(session)
    context = {"session": session, "map": treemap.tree_map(skeleton, _ids(request, "expand"), _ids(request, "unfold"),
                                                           names=trees.branch_names(session),
                                                           links=runs.provenance_edges(session))}
    return render(request, "conversations/_treemap.html", context)
