"""Compaction markers in Arbor JSON: exported with their session, read back, written again.

A compaction (:class:`memory.models.Compaction`) is attached to a run and names messages by their
database ids (``replaced``, ``dropped``, ``replaced_message_ids``); in the file a message is named
by its run and position instead, so an import (which gives every row a new id) can name them
again. The ``compactions`` list of an Arbor JSON session::

    [{"run_id", "memory_id", "status": "ready" | "failed", "base": null | index in this list,
      "policy", "applied", "from_depth",
      "replaced": [{"run_id", "position", "content"}], "dropped": [{"run_id", "position"}],
      "replaced_messages": [{"run_id", "position"}],
      "summary", "model", "usage": {"prompt_tokens", "completion_tokens"},
      "usable_window", "tokens_before", "tokens_after", "utilisation_before", "utilisation_after",
      "error", "timings": {"created_at", "started_at", "finished_at"}}]

Pending and running compactions are not exported (they are work in progress, not history).
"""

from __future__ import annotations

import math
import uuid

from conversations.models import Message
from memory.models import Compaction, CompactionStatus

from .drafts import CompactionDraft, MessageRef, RunDraft, clean_int, parse_time, repair_json, repair_text

EXPORTED = (CompactionStatus.READY, CompactionStatus.FAILED)


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def compactions_json(runs, by_run: dict) -> list[dict]:
    """The ``compactions`` of a session whose runs and ``{run id: [Message]}`` are given (see
    :func:`archive.exporters.tree`), oldest first; [] when there are none."""
    where = {m.pk: (str(m.run_id), m.position) for messages in by_run.values() for m in messages}
    rows = list(Compaction.objects.filter(run__in=[r.pk for r in runs], status__in=EXPORTED).order_by("created_at",
                                                                                                       "pk"))
    index = {c.pk: i for i, c in enumerate(rows)}

    def refs(ids) -> list[dict]:
        return [{"run_id": where[int(i)][0], "position": where[int(i)][1]} for i in ids if int(i) in where]

    return [{
        "run_id": str(c.run_id), "memory_id": c.memory_id, "status": c.status, "base": index.get(c.base_id),
        "policy": c.policy, "applied": [_applied_out(a, refs) for a in c.applied], "from_depth": c.from_depth,
        "replaced": [{**refs([key])[0], "content": text} for key, text in c.replaced.items() if int(key) in where],
        "dropped": refs(c.dropped), "replaced_messages": refs(c.replaced_message_ids),
        "summary": c.summary, "model": c.model,
        "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens},
        "usable_window": c.usable_window, "tokens_before": c.tokens_before, "tokens_after": c.tokens_after,
        "utilisation_before": c.utilisation_before, "utilisation_after": c.utilisation_after, "error": c.error,
        "timings": {"created_at": _iso(c.created_at), "started_at": _iso(c.started_at),
                    "finished_at": _iso(c.finished_at)},
    } for c in rows]


def _applied_out(step, refs) -> dict:
    """A strategy of ``applied`` with the message ids it acted on (``messages``) as references."""
    if _names_messages(step):
        return {**step, "messages": refs(step["messages"])}
    return step


def _ratio(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def compaction_drafts(raw, index: dict[str, int], runs: list[RunDraft], warnings: list[str]) -> list[CompactionDraft]:
    """Drafts of a session's ``compactions`` list; ``index``: file run id → index in ``runs``.

    A compaction attached to a run that is not in the session, not ready or failed, or a second one
    for the same run and memory id, is left out with a warning; a message reference that names no
    message of the session is dropped (counted in one warning).
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        warnings.append("'compactions' is not a list: ignored")
        return []
    drafts: list[CompactionDraft] = []
    kept_at: dict[int, int] = {}  # position in the file → index in drafts
    seen: set[tuple[int, str]] = set()
    bad_refs = 0

    def ref(item) -> MessageRef | None:
        nonlocal bad_refs
        run = index.get(str(item.get("run_id"))) if isinstance(item, dict) else None
        position = clean_int(item.get("position")) if isinstance(item, dict) else None
        if run is None or position is None or position >= len(runs[run].messages):
            bad_refs += 1
            return None
        return MessageRef(run=run, position=position)

    for i, item in enumerate(raw):
        draft = _compaction(item, index, ref, kept_at, warnings, i)
        if draft is None:
            continue
        if (draft.run, draft.memory_id) in seen:
            warnings.append(f"compaction {i} repeats run {item.get('run_id')!r} and memory id: left out")
            continue
        seen.add((draft.run, draft.memory_id))
        kept_at[i] = len(drafts)
        drafts.append(draft)
    if bad_refs:
        warnings.append(f"{bad_refs} message reference(s) of compactions name no message of the session: dropped")
    return drafts


def _compaction(item, index, ref, kept_at, warnings, i) -> CompactionDraft | None:
    """One compaction's draft, or None (with a warning) when it cannot be imported."""
    if not isinstance(item, dict):
        warnings.append(f"compaction {i} is not an object: left out")
        return None
    run = index.get(str(item.get("run_id")))
    status = str(item.get("status") or "")
    if run is None or status not in EXPORTED:
        why = "names a run not in the session" if run is None else f"is {status[:20] or 'without status'}"
        warnings.append(f"compaction {i} {why}: left out")
        return None
    usage = item.get("usage") if isinstance(item.get("usage"), dict) else {}
    timings = item.get("timings") if isinstance(item.get("timings"), dict) else {}
    base = item.get("base")
    lists = {key: item.get(key) if isinstance(item.get(key), list) else [] for key in
             ("replaced", "dropped", "replaced_messages")}
    replaced = [(r, repair_text(x.get("content"))) for x in lists["replaced"] if (r := ref(x)) is not None]
    return CompactionDraft(
        run=run, memory_id=repair_text(item.get("memory_id") or "default")[:100] or "default", status=status,
        base=kept_at.get(base) if isinstance(base, int) and not isinstance(base, bool) else None,
        policy=repair_json(item["policy"]) if isinstance(item.get("policy"), dict) else {},
        applied=[_applied_in(a, ref) for a in item["applied"]] if isinstance(item.get("applied"), list) else [],
        from_depth=clean_int(item.get("from_depth")) or 0, replaced=replaced,
        dropped=[r for x in lists["dropped"] if (r := ref(x)) is not None],
        replaced_messages=[r for x in lists["replaced_messages"] if (r := ref(x)) is not None],
        summary=repair_text(item.get("summary")), model=repair_text(item.get("model") or "")[:200],
        prompt_tokens=clean_int(usage.get("prompt_tokens")),
        completion_tokens=clean_int(usage.get("completion_tokens")),
        usable_window=clean_int(item.get("usable_window")) or 0,
        tokens_before=clean_int(item.get("tokens_before")) or 0, tokens_after=clean_int(item.get("tokens_after")),
        utilisation_before=_ratio(item.get("utilisation_before")) or 0.0,
        utilisation_after=_ratio(item.get("utilisation_after")), error=repair_text(item.get("error")),
        created_at=parse_time(timings.get("created_at")), started_at=parse_time(timings.get("started_at")),
        finished_at=parse_time(timings.get("finished_at")),
    )


def _applied_in(step, ref):
    """A strategy of ``applied`` as read: its ``messages`` references become :class:`MessageRef`."""
    step = repair_json(step)
    if _names_messages(step):
        return {**step, "messages": [r for x in step["messages"] if (r := ref(x)) is not None]}
    return step


def write_compactions(drafts: list[CompactionDraft], run_ids: list[uuid.UUID], *, now) -> None:
    """Write a session's compactions once its runs (``run_ids``, by draft index) and messages exist."""
    if not drafts:
        return
    wanted = {run_ids[r.run] for d in drafts for r in (*d.dropped, *d.replaced_messages, *(x for x, _ in d.replaced),
                                                        *_applied_refs(d))}
    ids = {(run_id, position): pk for run_id, position, pk in
           Message.objects.filter(run_id__in=wanted).values_list("run_id", "position", "pk")}

    def pk(ref: MessageRef) -> int:
        return ids[(run_ids[ref.run], ref.position)]

    written: list[Compaction] = []
    for d in drafts:
        written.append(Compaction.objects.create(
            run_id=run_ids[d.run], memory_id=d.memory_id, status=d.status,
            base=written[d.base] if d.base is not None else None, policy=d.policy,
            applied=[{**a, "messages": [pk(r) for r in a["messages"]]} if _names_messages(a) else a
                     for a in d.applied],
            from_depth=d.from_depth, replaced={str(pk(r)): text for r, text in d.replaced},
            dropped=[pk(r) for r in d.dropped], replaced_message_ids=[pk(r) for r in d.replaced_messages],
            summary=d.summary, model=d.model, prompt_tokens=d.prompt_tokens, completion_tokens=d.completion_tokens,
            usable_window=d.usable_window, tokens_before=d.tokens_before, tokens_after=d.tokens_after,
            utilisation_before=d.utilisation_before, utilisation_after=d.utilisation_after, error=d.error,
            created_at=d.created_at or now, started_at=d.started_at, finished_at=d.finished_at or d.created_at or now,
        ))


def _names_messages(step) -> bool:
    return isinstance(step, dict) and isinstance(step.get("messages"), list)


def _applied_refs(draft: CompactionDraft) -> list[MessageRef]:
    return [r for a in draft.applied if _names_messages(a) for r in a["messages"]]
