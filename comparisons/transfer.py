"""Comparisons in Arbor JSON: the ``comparisons`` section of an exported session, and writing it
back on import (the archive app sends :data:`conversations.signals.session_export` and
``session_import``; :mod:`comparisons.receivers` answers them with these functions).

A comparison names runs by their ids in the file; on import they are the session's new runs::

    {"id", "branch_point_run_id", "mode": "new_prompt" | "replay", "source_run_id": null | id,
     "prompts": [str, ...], "blind", "column_order": [variant position, ...], "revealed_at",
     "tags": [str, ...], "created_at",
     "variants": [{"position", "label", "config": {"model", "system_prompt", "params", "memory_id",
                   "memory_window_size"}, "stopped_reason", "runs": [run id of turn 0, turn 1, ...]}],
     "votes": [{"turn", "choice", "note", "created_at", "ranks": [{"variant": position, "rank"}]}]}

Only comparisons whose branch point and runs are all in the exported session are written. On
import each variant gets an agent with its configuration (reused when the owner has an identical
one made by a comparison), as :func:`comparisons.services.comparison_start` gives it; a comparison
that does not fit (a run not in the session, a bad vote) is left out with a warning.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from conversations.models import Run
from core.errors import ArborError

from .models import (
    MAX_VARIANTS,
    MIN_VARIANTS,
    Comparison,
    Mode,
    Tag,
    Variant,
    VariantRun,
    Vote,
    VoteChoice,
    VoteRank,
    config_fingerprint,
)
from .services import agent_config, clean_tags, variant_agent_for_config

NOTE_LIMIT = 2000


class _Bad(Exception):
    """A comparison of the file that cannot be imported; the message says why."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def comparisons_json(session, run_ids: set) -> list[dict]:
    """The ``comparisons`` section of ``session`` whose exported runs are ``run_ids``, oldest first."""
    found = []
    rows = (Comparison.objects.filter(session=session).prefetch_related("variants__variant_runs", "votes__ranks",
                                                                         "tags").order_by("created_at", "pk"))
    for c in rows:
        variants = sorted(c.variants.all(), key=lambda v: v.position)
        turns = {v.pk: [vr.run_id for vr in sorted(v.variant_runs.all(), key=lambda vr: vr.turn)] for v in variants}
        if c.branch_point_id not in run_ids or any(r not in run_ids for runs in turns.values() for r in runs):
            continue
        position = {v.pk: v.position for v in variants}
        found.append({
            "id": str(c.pk), "branch_point_run_id": str(c.branch_point_id), "mode": c.mode,
            "source_run_id": str(c.source_run_id) if c.source_run_id else None, "prompts": c.prompts,
            "blind": c.blind, "column_order": c.column_order, "revealed_at": _iso(c.revealed_at),
            "tags": [t.name for t in c.tags.all()], "created_at": _iso(c.created_at),
            "variants": [{"position": v.position, "label": v.label, "config": v.config,
                          "stopped_reason": v.stopped_reason, "runs": [str(r) for r in turns[v.pk]]}
                         for v in variants],
            "votes": [{"turn": vote.turn, "choice": vote.choice, "note": vote.note, "created_at": _iso(vote.created_at),
                       "ranks": [{"variant": position[r.variant_id], "rank": r.rank} for r in vote.ranks.all()]}
                      for vote in sorted(c.votes.all(), key=lambda v: v.turn)],
        })
    return found


def comparisons_write(*, session_id, owner, runs: dict[str, uuid.UUID], raw) -> list[str]:
    """Write the ``comparisons`` section of an imported session (``runs``: file run id → new run
    id); returns warnings about the comparisons left out. Each comparison is written in a savepoint."""
    if not isinstance(raw, list):
        return ["'comparisons' is not a list: ignored"]
    warnings = []
    for i, item in enumerate(raw):
        try:
            plan = _plan(item, runs)
            with transaction.atomic():
                _write(plan, session_id=session_id, owner=owner)
        except (_Bad, ArborError) as exc:
            warnings.append(f"comparison {i}: {exc}: left out")
        except DatabaseError as exc:
            warnings.append(f"comparison {i}: the database refused it ({' '.join(str(exc).split())[:200]}): left out")
    return warnings


def _run(runs: dict, value, what: str) -> uuid.UUID:
    run_id = runs.get(str(value)) if value is not None else None
    if run_id is None:
        raise _Bad(f"its {what} {str(value)[:60]!r} is not a run of the session")
    return run_id


def _time(value) -> datetime | None:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    return parsed if parsed is None or parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _plan(item, runs: dict) -> dict:
    """A checked comparison, its run ids resolved; raises _Bad with the reason."""
    if not isinstance(item, dict):
        raise _Bad("not an object")
    prompts = item.get("prompts")
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise _Bad("its prompts are not a non-empty list of texts")
    mode = item.get("mode") if item.get("mode") in Mode.values else Mode.NEW_PROMPT
    variants = item.get("variants")
    if not isinstance(variants, list) or not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        raise _Bad(f"it needs {MIN_VARIANTS} to {MAX_VARIANTS} variants")
    planned = [_variant(v, runs, len(prompts)) for v in variants]
    if sorted(v["position"] for v in planned) != list(range(len(planned))):
        raise _Bad("its variant positions are not 0, 1, ...")
    if len({v["label"].lower() for v in planned}) != len(planned):
        raise _Bad("two variants have the same label")
    all_runs = [r for v in planned for r in v["runs"]]
    if len(set(all_runs)) != len(all_runs):
        raise _Bad("a run answers two turns")
    order = item.get("column_order")
    if not isinstance(order, list) or sorted(order) != list(range(len(planned))):
        order = list(range(len(planned)))
    return {
        "branch_point": _run(runs, item.get("branch_point_run_id"), "branch point"),
        "source_run": runs.get(str(item.get("source_run_id"))) if item.get("source_run_id") else None,
        "mode": mode, "prompts": prompts, "blind": bool(item.get("blind")), "column_order": order,
        "revealed_at": _time(item.get("revealed_at")), "created_at": _time(item.get("created_at")),
        "tags": clean_tags(item.get("tags") or []), "variants": planned,
        "votes": _votes(item.get("votes"), planned, len(prompts)),
    }


def _variant(raw, runs: dict, turns: int) -> dict:
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
        raise _Bad("a variant is not an object with a config")
    label = str(raw.get("label") or "").strip()
    position = raw.get("position")
    variant_runs = raw.get("runs") if isinstance(raw.get("runs"), list) else []
    if not label or len(label) > 100 or not isinstance(position, int) or len(variant_runs) > turns:
        raise _Bad("a variant has no label, no position or more runs than prompts")
    return {"position": position, "label": label, "config": raw["config"],
            "stopped_reason": str(raw.get("stopped_reason") or "")[:200],
            "runs": [_run(runs, r, f"turn {t + 1} run") for t, r in enumerate(variant_runs)]}


def _votes(raw, variants: list[dict], turns: int) -> list[dict]:
    votes, seen = [], set()
    for vote in raw if isinstance(raw, list) else []:
        turn = vote.get("turn") if isinstance(vote, dict) else None
        if not isinstance(turn, int) or not 0 <= turn < turns or turn in seen:
            raise _Bad("a vote names no prompt of the comparison, or a prompt twice")
        if vote.get("choice") not in VoteChoice.values or len(str(vote.get("note") or "")) > NOTE_LIMIT:
            raise _Bad(f"the vote on prompt {turn + 1} has no known choice, or a note over {NOTE_LIMIT} characters")
        ranks = {r.get("variant"): r.get("rank") for r in vote.get("ranks") or [] if isinstance(r, dict)}
        answered = {v["position"] for v in variants if len(v["runs"]) > turn}
        if set(ranks) != answered or len(answered) < len(variants) or not all(
                isinstance(rank, int) and 1 <= rank <= len(variants) for rank in ranks.values()):
            raise _Bad(f"the vote on prompt {turn + 1} does not rank every variant's answer")
        seen.add(turn)
        votes.append({"turn": turn, "choice": vote["choice"], "note": str(vote.get("note") or ""),
                      "created_at": _time(vote.get("created_at")), "ranks": ranks})
    return votes


def _write(plan: dict, *, session_id, owner) -> Comparison:
    """Write a planned comparison: the comparison, tags, variants with their agents, turns and votes."""
    comparison = Comparison.objects.create(
        owner=owner, session_id=session_id, branch_point_id=plan["branch_point"], mode=plan["mode"],
        source_run_id=plan["source_run"], prompts=plan["prompts"], blind=plan["blind"],
        column_order=plan["column_order"], revealed_at=plan["revealed_at"],
        created_at=plan["created_at"] or timezone.now(),
    )
    if plan["tags"]:
        comparison.tags.set([Tag.objects.get_or_create(owner=owner, name=name)[0] for name in plan["tags"]])
    by_position, runs_of = {}, {v["position"]: v["runs"] for v in plan["variants"]}
    for v in plan["variants"]:
        agent = variant_agent_for_config(owner=owner, label=v["label"], config=v["config"],
                                         tag=str(comparison.pk)[:8])
        config = agent_config(agent)
        by_position[v["position"]] = variant = Variant.objects.create(
            comparison=comparison, position=v["position"], label=v["label"], agent=agent, config=config,
            config_key=config_fingerprint(config), stopped_reason=v["stopped_reason"],
        )
        VariantRun.objects.bulk_create([VariantRun(variant=variant, turn=t, run_id=r) for t, r in enumerate(v["runs"])])
        Run.objects.filter(pk__in=v["runs"]).update(agent=agent)
    for vote in plan["votes"]:
        row = Vote.objects.create(comparison=comparison, turn=vote["turn"], choice=vote["choice"], note=vote["note"],
                                  created_at=vote["created_at"] or timezone.now())
        VoteRank.objects.bulk_create([
            VoteRank(vote=row, variant=by_position[p], run_id=runs_of[p][vote["turn"]], rank=rank)
            for p, rank in vote["ranks"].items()
        ])
    return comparison

