"""Template tags of the branch tools: ``{% load branch_tags %}``.

- ``{% run_labels session run as labels %}``: the labels standing on ``run`` in ``session`` (one
  query per page: :func:`branches.selectors.labels_by_run` keeps them on the session object).
- ``{% session_labels session as labels %}``: all labels of a session's tree (the same query).
- ``{% list_labels s as labels %}``: the labels of a session of the sessions list; the first call
  reads them for every session of the page (``page`` in the context) in one query.
- ``{% undoable_prunes session as prunes %}``: the subtrees pruned recently enough to undo.
- ``segments|diff_html``: a word diff's segments as escaped text in ``<del>``/``<ins>`` marks.
"""

from __future__ import annotations

from django import template
from django.conf import settings
from django.utils.html import escape
from django.utils.safestring import mark_safe

from .. import selectors

register = template.Library()


@register.simple_tag
def run_labels(session, run) -> list:
    if session is None or run is None:
        return []
    return selectors.labels_by_run(session).get(run.pk, [])


@register.simple_tag
def session_labels(session) -> list:
    if session is None:
        return []
    return [label for labels in selectors.labels_by_run(session).values() for label in labels]


@register.simple_tag(takes_context=True)
def list_labels(context, session) -> list:
    page = context.get("page")
    rows = getattr(page, "object_list", None)
    if rows is not None and any(s.pk == session.pk for s in rows):
        cached = getattr(page, "_branch_labels", None)
        if cached is None:
            cached = page._branch_labels = selectors.labels_of_sessions(list(rows))
        return cached.get(session.pk, [])
    return selectors.labels_of_sessions([session]).get(session.pk, [])


@register.simple_tag
def undoable_prunes(session) -> list:
    return list(selectors.undoable_prunes(session)) if session is not None else []


_MARKS = {"equal": "{}", "delete": '<del class="diff-del">{}</del>', "insert": '<ins class="diff-ins">{}</ins>'}


@register.filter
def diff_html(segments) -> str:
    """``[(op, text), ...]`` as HTML: equal text plain, ``delete`` in ``<del>``, ``insert`` in
    ``<ins>``; every text escaped."""
    return mark_safe("".join(_MARKS.get(op, "{}").format(escape(text)) for op, text in segments or ()))


@register.simple_tag
def undo_minutes() -> int:
    """How long a prune (or a session delete) can be undone, in whole minutes."""
    return max(1, settings.ARBOR_UNDO_DELETE_SECONDS // 60)
