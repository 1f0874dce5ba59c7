"""Template tags of fan-out, fuse and merge in the chat: ``{% load merges_tags %}``.

- ``{% run_provenance turn as prov %}``: the provenance of a chat turn (a fused answer or a merge
  turn; None otherwise), as recorded on its input message, its sources marked pruned when they
  were pruned since (one query per page, only on a page that shows a provenance).
- ``{% fan_out_columns turn as columns %}``: the side-by-side columns of the fan-out the turn's run
  belongs to (empty, and no query, when none).
- ``{% merge_undoable run %}``: True while a merge turn's undo time lasts.
"""

from __future__ import annotations

from django import template

from conversations.selectors import pages, undo_cutoff

from .. import selectors, services

register = template.Library()


@register.simple_tag(takes_context=True)
def run_provenance(context, turn):
    """The turn's recorded provenance with its sources marked pruned when they were pruned since
    (one query per page and session, the first time a page shows a provenance)."""
    snapshot = selectors.turn_provenance(turn) if turn is not None else None
    if not snapshot:
        return None
    holder = context.get("request") or context
    cache = getattr(holder, "_arbor_pruned_sources", None)
    if cache is None:
        cache = {}
        holder._arbor_pruned_sources = cache
    session_id = turn.run.session_id
    if session_id not in cache:
        cache[session_id] = selectors.pruned_sources(session_id)
    return selectors.with_pruned_marks(snapshot, cache[session_id])


@register.simple_tag
def fan_out_columns(turn) -> list:
    fan_out_id = selectors.turn_fan_out(turn) if turn is not None else None
    return selectors.fan_out_columns(fan_out_id) if fan_out_id else []


@register.simple_tag
def merge_undoable(run) -> bool:
    return run is not None and run.created_at >= undo_cutoff()


@register.simple_tag
def fuse_instruction() -> str:
    """The fuse form's default instruction (editable)."""
    return services.DEFAULT_FUSE_INSTRUCTION


@register.simple_tag(takes_context=True)
def fuse_agents(context) -> list:
    """The agents the signed-in user may pick to write a fused answer (one query)."""
    request = context.get("request")
    return list(pages.pickable_agents(request.user)) if request is not None else []
