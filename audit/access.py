"""Who may open the staff audit pages (the audit log export, a run's trace)."""

from __future__ import annotations

from django.http import Http404, HttpRequest


def require_staff_perm(request: HttpRequest, perm: str) -> None:
    """Let only active staff holding ``perm`` (e.g. ``"conversations.view_run"``) through.

    Raises Http404 for anyone else, exactly as for a page that does not exist (nothing revealed).
    """
    user = request.user
    if not (user.is_active and user.is_staff and user.has_perm(perm)):
        raise Http404("No such page.")
