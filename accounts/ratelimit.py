"""Rate limits on run creation, per user, shared by the pages and the API.

Counting is django-ratelimit's (fixed windows in the Django cache: Redis in production, so every
web process shares the counts; files under ``var/cache`` in the embedded mode). The limit is
``settings.ARBOR_RUN_RATE`` (``"30/m"``: 30 runs a minute; ``count/period`` with period s, m, h or
d; empty: no limit), read on each request so it can change without a restart of the code.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django_ratelimit.core import get_usage

from core.asyncdb import request_call

RUN_CREATION_GROUP = "arbor.run_create"


def run_rate_usage(request, *, increment: bool):
    """django-ratelimit's usage dict for ``request.user`` (``count``, ``limit``, ``time_left``,
    ``should_limit``), or None when no limit is configured or nobody is logged in."""
    rate = getattr(settings, "ARBOR_RUN_RATE", "") or ""
    user = getattr(request, "user", None)
    if not rate or user is None or not user.is_authenticated:
        return None
    return get_usage(request, group=RUN_CREATION_GROUP, key="user", rate=rate, method="POST", increment=increment)


def too_many_runs_response(request, usage: dict) -> HttpResponse:
    """429 with a clear message: JSON ``{"detail": ...}`` for the API, text for pages (htmx shows it)."""
    wait = max(1, math.ceil(usage.get("time_left") or 1))
    message = (f"Too many runs: at most {usage['limit']} may be started per "
               f"{_period_text(settings.ARBOR_RUN_RATE)}. Try again in {wait} s.")
    if request.path_info.startswith("/api/"):
        response = JsonResponse({"detail": message}, status=429)
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(wait)
    return response


def _period_text(rate: str) -> str:
    unit = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
    count_part, _, period = rate.partition("/")
    digits = "".join(ch for ch in period if ch.isdigit())
    letter = (period.strip(digits) or "s")[0].lower()
    return f"{digits} {unit.get(letter, letter)}s" if digits and digits != "1" else unit.get(letter, letter)


def limit_run_creation(view):
    """Decorate a view or a django-ninja operation (``request`` first; sync or async) that creates
    runs: over the limit it answers 429 without calling it. Each POST counts, accepted or not."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        usage = run_rate_usage(request, increment=True)
        if usage is not None and usage["should_limit"]:
            return too_many_runs_response(request, usage)
        return view(request, *args, **kwargs)

    @functools.wraps(view)
    async def async_wrapper(request, *args, **kwargs):
        usage = await request_call(run_rate_usage)(request, increment=True)
        if usage is not None and usage["should_limit"]:
            return too_many_runs_response(request, usage)
        return await view(request, *args, **kwargs)

    decorated = async_wrapper if iscoroutinefunction(view) else wrapper
    # resolved annotations, so django-ninja reads the operation's real parameter types
    with contextlib.suppress(NameError, TypeError):
        decorated.__signature__ = inspect.signature(view, eval_str=True)
    return decorated
