"""Branch points in the chat: ``{% load branch_points %}``.

``{% branch_points_of session as points %}``: the branch points of the session's shown branch (the
path to its active run; :func:`conversations.selectors.paths.branch_points`, two queries at any depth), each
with ``url``: a plain link that shows that turn — the chat reaching back to it (``?at=``) when it
is within ``paths.MAX_WINDOW`` turns of the newest, else the page of the turns above the next run
(``older?before=``), both with the turn's ``#turn-<run id>`` anchor. The markup is in
templates/conversations/_branch_points.html and _branch_marker.html; static/arbor/branchpoints.js
adds the keys.
"""

from __future__ import annotations

from django import template
from django.urls import reverse

from ..selectors.paths import MAX_WINDOW, branch_points

register = template.Library()

PREVIEW_CHARS = 48  # the sidebar shows about one line of the input


@register.simple_tag
def branch_points_of(session) -> list:
    points = branch_points(session, session.active_run_id, PREVIEW_CHARS)
    if not points:
        return []
    chat = reverse("conversations:session_detail", args=[session.pk])
    older = reverse("conversations:session_older", args=[session.pk])
    for point in points:
        if point.from_leaf < MAX_WINDOW or point.below is None:
            point.url = f"{chat}?at={point.run_id}#turn-{point.run_id}"
        else:
            point.url = f"{older}?before={point.below}#turn-{point.run_id}"
    return points
