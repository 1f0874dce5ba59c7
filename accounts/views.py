"""Pages of per-user settings: the colour theme (a form in the top bar of every page)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from core.refusals import answers_refusals

from . import services


@require_POST
@answers_refusals()  # the reason as text, also without JavaScript
def theme(request: HttpRequest) -> HttpResponse:
    """Remember the user's colour theme (POST ``theme`` = system, light or dark).

    From app.js (``X-Requested-With: fetch``): 204, or 400 with the reason as text. Without
    JavaScript: back to ``next`` (a local URL only), else to the sessions list. Anonymous users: 302
    to the login page (the site's login-required middleware)."""
    services.theme_set(user=request.user, theme=request.POST.get("theme", ""))
    if request.headers.get("X-Requested-With") == "fetch":
        return HttpResponse(status=204)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = "/"
    return redirect(target)
