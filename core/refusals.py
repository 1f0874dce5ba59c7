"""The answer of a page to a refused action: one decorator, :func:`answers_refusals`, for the views
whose services raise :class:`core.errors.ArborError`, instead of a ``try``/``except`` in each.

What the decorated view raises is answered by :func:`refusal_response`, by where the request came
from:

* ``as_json=True`` (a JSON download): ``{"detail": <message>}`` with the error's status;
* htmx or ``fetch`` (``X-Requested-With: fetch``), or a view without ``back``: the message as
  ``text/plain`` with the error's status (app.js shows it where the action was);
* a plain form post: the message flashed (an error) and a 302 to ``back``.

:class:`~core.errors.NotFound` and :class:`~core.errors.Forbidden` pass through, whoever raised
them: a lookup of another user's (or a gone) object keeps its 404 page, a refused permission its
403 page (:class:`core.middleware.NotFoundMiddleware`), before, during or after the action alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib import messages
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from .errors import ArborError, Forbidden, NotFound

# Where a refused form post goes back to: a URL name (reversed with the view's URL kwargs), or a
# function of the request and the view's URL kwargs that returns a URL.
Back = str | Callable[..., str] | None


def refusal_response(request, exc: ArborError, back_url: str | None = None, *, as_json: bool = False) -> HttpResponse:
    """The answer to ``exc`` refusing ``request``'s action (see the module's docstring).

    ``back_url``: where a plain form post is sent back to, with the message flashed; None answers
    the message as text whatever the request."""
    if as_json:
        return JsonResponse({"detail": exc.message}, status=exc.status)
    if back_url is None or getattr(request, "htmx", False) or request.headers.get("X-Requested-With") == "fetch":
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")
    messages.error(request, exc.message)
    return redirect(back_url)


def _back_url(back: Back, request, args: tuple, kwargs: dict) -> str | None:
    if back is None:
        return None
    if isinstance(back, str):
        return reverse(back, kwargs=kwargs)
    return back(request, *args, **kwargs)


def answers_refusals(back: Back = None, *, as_json: bool = False):
    """Decorate a view (``request`` first) whose actions may raise ArborError: the view answers
    :func:`refusal_response` instead of raising; NotFound and Forbidden still raise (the site's
    404 and 403 pages). ``back``: see :data:`Back`; ``as_json``: answer ``{"detail": ...}``.

    Usage::

        @require_POST
        @answers_refusals(back="connections:detail")  # reversed with connection_id
        def delete(request, connection_id): ...
    """

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                return view(request, *args, **kwargs)
            except (NotFound, Forbidden):
                raise
            except ArborError as exc:
                return refusal_response(request, exc, _back_url(back, request, args, kwargs), as_json=as_json)

        return wrapper

    return decorate
