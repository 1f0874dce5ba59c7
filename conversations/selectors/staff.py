"""Reads of the staff admin over sessions and runs: the session list's annotations (counts, tokens,
cost, last activity, one correlated subquery each), its filters and its search. The admin classes
(:mod:`conversations.admin`) only configure Django's admin and call these."""

from __future__ import annotations

import contextlib
import uuid

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    FloatField,
    IntegerField,
    Max,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest
from django.utils.text import smart_split, unescape_string_literal

from core.prices import PER_TOKENS, model_prices

from ..models import Message, Run, RunStatus, Session


def cost_expression(prefix: str = ""):
    """A SQL sum of the cost in USD of runs reached through ``prefix`` (``"runs__"`` from sessions,
    ``""`` on runs), at :func:`core.prices.model_prices` (USD per 1M tokens), or None when no prices
    are configured. Runs of unpriced models cost 0."""
    prices = model_prices()
    if not prices:
        return None
    prompt = Coalesce(F(f"{prefix}prompt_tokens"), 0)
    completion = Coalesce(F(f"{prefix}completion_tokens"), 0)
    whens = [
        When(**{f"{prefix}model": model},
             then=(prompt * Value(price.prompt) + completion * Value(price.completion)) / Value(float(PER_TOKENS)))
        for model, price in prices.items()
    ]
    return Case(*whens, default=Value(0.0), output_field=FloatField())


def _per_session(aggregate, **filters):
    """A correlated subquery: ``aggregate`` over the runs of the outer session (None when none)."""
    return Subquery(
        Run.objects.filter(session=OuterRef("pk"), **filters).order_by().values("session")
        .annotate(value=aggregate).values("value")[:1]
    )


def annotate_sessions(queryset):
    """Sessions with ``run_count``, ``branch_count`` (leaf runs), ``token_total``, ``cost`` (USD,
    None without prices), ``last_activity`` and ``n_<status>`` for each run status.

    Each column is a correlated subquery, not a join with GROUP BY: the database computes them
    only for the rows of the page shown (after ORDER BY ... LIMIT), and the admin's COUNT query
    drops them. One query for the whole list, whatever the number of sessions on the page.
    """
    leaves = (
        Run.objects.filter(session=OuterRef("pk"))
        .exclude(Exists(Run.objects.filter(parent_run=OuterRef("pk"), session_id=OuterRef("session_id"))))
        .order_by()
        .values("session")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    tokens = Sum(Coalesce(F("prompt_tokens"), 0) + Coalesce(F("completion_tokens"), 0))
    newest = Max(Greatest("created_at", Coalesce("finished_at", "created_at")))
    annotations = {
        "run_count": Coalesce(_per_session(Count("pk")), 0),
        "branch_count": Coalesce(Subquery(leaves, output_field=IntegerField()), 0),
        "token_total": Coalesce(_per_session(tokens), 0),
        "last_activity": Greatest("updated_at", Coalesce(_per_session(newest), "updated_at")),
        **{f"n_{status}": Coalesce(_per_session(Count("pk"), status=status), 0) for status in RunStatus.values},
    }
    cost = cost_expression()
    annotations["cost"] = (
        _per_session(Sum(cost)) if cost is not None else Value(None, output_field=FloatField())
    )
    return queryset.annotate(**annotations)


def with_run_status(sessions, status: str):
    """The sessions that have a run in ``status`` (EXISTS, not a join: a join would multiply the
    aggregated rows)."""
    return sessions.filter(Exists(Run.objects.filter(session=OuterRef("pk"), status=status)))


def with_model(sessions, model: str):
    """The sessions that have a run of ``model`` (EXISTS)."""
    return sessions.filter(Exists(Run.objects.filter(session=OuterRef("pk"), model=model)))


def models_used(limit: int = 100) -> list[str]:
    """The model names runs used, alphabetically (at most ``limit``)."""
    return list(Run.objects.order_by("model").values_list("model", flat=True).distinct()[:limit])


def deleted_or_not(sessions, deleted: bool):
    """The deleted sessions (``deleted``) or the live ones."""
    return sessions.filter(deleted_at__isnull=not deleted)


def search_sessions_for_staff(sessions, search_term: str):
    """Each word (or "quoted phrase") of ``search_term`` must match the title, the id or a message's
    text. Message matches are an EXISTS subquery: a join would multiply the list's aggregated columns."""
    for bit in smart_split(search_term or ""):
        if bit[:1] in ('"', "'") and bit[-1:] == bit[:1]:
            bit = unescape_string_literal(bit)
        if not bit:
            continue
        match = Q(title__icontains=bit) | Q(
            Exists(Message.objects.filter(run__session=OuterRef("pk"), content__icontains=bit))
        )
        with contextlib.suppress(ValueError):  # not an id
            match |= Q(pk=uuid.UUID(bit))
        sessions = sessions.filter(match)
    return sessions


def owner_id_of_session(session_id):
    """The owner's id of session ``session_id`` (None when there is none)."""
    return Session.objects.filter(pk=session_id).values_list("owner_id", flat=True).first()
