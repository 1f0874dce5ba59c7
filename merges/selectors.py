"""Reads of provenance: what a fused run or a merge turn carries and from where, the runs a merge
may carry (the source branch since the common ancestor), the edges the tree map draws, and the
fan-outs the chat shows side by side."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from connections.selectors import prices_for
from conversations.models import BranchLabel, Message, Role, Run, Session
from core.errors import NotFound

from .models import FanOut, Kind, Provenance, ProvenanceSource


def _source_rows(provenance_ids) -> dict:
    """``{provenance_id: [{"run_id", "depth", "turn", "pruned"}]}`` in order (one query)."""
    rows: dict = {}
    sources = (ProvenanceSource.objects.filter(provenance_id__in=provenance_ids)
               .values_list("provenance_id", "run_id", "run__depth", "run__pruned_by_id").order_by("position"))
    for provenance_id, run_id, depth, pruned_by in sources:
        rows.setdefault(provenance_id, []).append(
            {"run_id": run_id, "depth": depth, "turn": depth + 1, "pruned": pruned_by is not None})
    return rows


def provenance_map(run_ids, *, session: Session | None = None) -> dict:
    """``{run_id: provenance}`` for the runs among ``run_ids`` that are fused runs or merge turns.

    A provenance: ``{"kind": "fuse"|"merge", "mode": "turns"|"digest"|"", "source_run_id",
    "source_turn", "source_pruned", "branch_name", "instruction", "sources": [{"run_id", "depth",
    "turn", "pruned"}]}``; ``pruned`` marks a source pruned from its tree since (the link stays).
    ``session`` instead of ids: every run of that session. Two queries (one when none has any)."""
    found_in = Provenance.objects.filter(run__session=session) if session is not None else \
        Provenance.objects.filter(run_id__in=list(run_ids))
    rows = list(found_in.values(
        "id", "run_id", "kind", "mode", "source_run_id", "source_run__depth", "source_run__pruned_by_id",
        "branch_name", "instruction"))
    if not rows:
        return {}
    sources = _source_rows([row["id"] for row in rows])
    found = {}
    for row in rows:
        depth = row["source_run__depth"]
        found[row["run_id"]] = {
            "kind": row["kind"], "mode": row["mode"], "source_run_id": row["source_run_id"],
            "source_turn": depth + 1 if depth is not None else None,
            "source_pruned": row["source_run__pruned_by_id"] is not None,
            "branch_name": row["branch_name"],
            "instruction": row["instruction"],
            "sources": sources.get(row["id"], []),
        }
    return found


def provenance_edges(session: Session) -> list[dict]:
    """The provenance edges of ``session``'s own runs (not pruned), for the tree map: ``[{"run_id",
    "source_run_id", "kind", "pruned"}]`` (a merge: one edge from its source run; a fuse: one per
    source); ``pruned``: the source was pruned since. One query."""
    rows = (ProvenanceSource.objects.filter(provenance__run__session=session, provenance__run__pruned_by__isnull=True)
            .values_list("provenance__run_id", "provenance__kind", "provenance__source_run_id",
                         "provenance__source_run__pruned_by_id", "run_id", "run__pruned_by_id")
            .order_by("provenance_id", "position"))
    edges, seen = [], set()
    for run_id, kind, merge_source, merge_pruned, source_id, source_pruned in rows:
        source, pruned = (merge_source, merge_pruned) if kind == Kind.MERGE else (source_id, source_pruned)
        if (run_id, source) not in seen:
            seen.add((run_id, source))
            edges.append({"run_id": run_id, "source_run_id": source, "kind": kind, "pruned": pruned is not None})
    return edges


@dataclass
class BranchSince:
    """The source branch of a merge as seen from its target: ``ancestor`` is the deepest run both
    paths share (None: none, different roots), ``runs`` the source path's runs below it (root first)."""

    ancestor: Run | None
    runs: list[Run]


def branch_since(target: Run, source: Run) -> BranchSince:
    """The runs on the path to ``source`` that are not on the path to ``target``, root first, and
    their common ancestor. Two path reads (one query each)."""
    on_target = set(Run.objects.ancestor_of(target, inclusive=True).values_list("pk", flat=True))
    path = list(Run.objects.ancestor_of(source, inclusive=True).order_by("depth"))
    shared = [run for run in path if run.pk in on_target]
    return BranchSince(ancestor=shared[-1] if shared else None, runs=[run for run in path if run.pk not in on_target])


def carried_messages(run_ids: list) -> list[Message]:
    """The user and assistant messages of ``run_ids`` (tool traffic left out: a tool call travels only
    with its results), in the order of the runs given, then by position. One query."""
    order = {run_id: index for index, run_id in enumerate(run_ids)}
    messages = list(Message.objects.filter(run_id__in=run_ids, role__in=[Role.USER, Role.ASSISTANT],
                                           tool_calls__isnull=True).exclude(content=""))
    return sorted(messages, key=lambda m: (order[m.run_id], m.position))


def branch_name(session: Session, source: Run, runs: list[Run]) -> str:
    """The label naming the source branch in ``session``: one on ``source`` or, failing that, on the
    deepest of ``runs`` that has one; "" when none has. One query."""
    ids = [source.pk] + [run.pk for run in reversed(runs)]
    labels = dict(BranchLabel.objects.filter(session=session, run_id__in=ids).visible().values_list("run_id", "name"))
    return next((labels[run_id] for run_id in ids if run_id in labels), "")


def fan_out_of(run_id) -> FanOut | None:
    """The fan-out a run was started by (None for an ordinary run). One query."""
    return FanOut.objects.filter(runs=run_id).first()


def fan_out_runs(fan_out_ids: list[uuid.UUID]) -> dict:
    """``{fan_out_id: [run ids in start order]}`` (one query)."""
    through = FanOut.runs.through
    found: dict = {}
    for fan_out_id, run_id in through.objects.filter(fanout_id__in=fan_out_ids).values_list(
            "fanout_id", "run_id").order_by("id"):
        found.setdefault(fan_out_id, []).append(run_id)
    return found


def get_fan_out_for(user, fan_out_id) -> FanOut:
    """A fan-out of one of ``user``'s live sessions; NotFound otherwise."""
    try:
        fan_out_id = uuid.UUID(str(fan_out_id))
    except ValueError:
        raise NotFound(f"No fan-out with id {fan_out_id}.") from None
    fan_out = FanOut.objects.filter(pk=fan_out_id, session__owner=user, session__deleted_at__isnull=True).first()
    if fan_out is None:
        raise NotFound(f"No fan-out with id {fan_out_id}.")
    return fan_out


def merge_turn(run: Run) -> Provenance | None:
    """The merge provenance of ``run`` (None when it is not a merge turn). One query."""
    return Provenance.objects.filter(run=run, kind=Kind.MERGE).first()


# --- the chat page: what the turns' own rows say, no query of their own ---------------------------

def _input_metadata(turn) -> dict:
    """The metadata of the input message (position 0) of a chat turn (``conversations`` ``Turn``)."""
    first = next((m for m in turn.messages if m.position == 0), None)
    return first.metadata if first is not None and first.metadata else {}


def turn_provenance(turn) -> dict | None:
    """The provenance a fused run or merge turn recorded on its input message when it was made
    (:func:`provenance_snapshot`); None for any other turn. No query: the chat has read the message."""
    return _input_metadata(turn).get("provenance")


def turn_fan_out(turn) -> str | None:
    """The id of the fan-out a turn's run was started by (recorded on its input message), or None."""
    return _input_metadata(turn).get("fan_out")


def pruned_sources(session_id) -> set[str]:
    """The ids (as strings) of the runs that provenance of ``session_id``'s runs names as a merge
    source or a fused answer and that were pruned since: what the chat marks "(pruned)" beside a
    turn's recorded provenance. One query."""
    merged = Provenance.objects.filter(run__session_id=session_id, source_run__pruned_by__isnull=False) \
        .order_by().values_list("source_run_id", flat=True)
    fused = ProvenanceSource.objects.filter(provenance__run__session_id=session_id, run__pruned_by__isnull=False) \
        .order_by().values_list("run_id", flat=True)
    return {str(pk) for pk in merged.union(fused)}


def with_pruned_marks(snapshot: dict, pruned: set[str]) -> dict:
    """A copy of a provenance snapshot with ``source_pruned`` and each source's ``pruned`` set from
    ``pruned`` (:func:`pruned_sources`)."""
    return {**snapshot, "source_pruned": snapshot.get("source_run_id") in pruned,
            "sources": [{**s, "pruned": s.get("run_id") in pruned} for s in snapshot.get("sources", [])]}


def provenance_snapshot(*, kind: str, sources: list[Run], mode: str = "", source: Run | None = None,
                        branch_name: str = "") -> dict:
    """What the chat shows of a provenance, stored on the run's input message when it is made (the
    rows stay the record: :func:`provenance_map` adds whether a source was pruned since)."""
    return {"kind": kind, "mode": mode, "branch_name": branch_name,
            "source_run_id": str(source.pk) if source is not None else None,
            "source_turn": source.depth + 1 if source is not None else None,
            "sources": [{"run_id": str(run.pk), "turn": run.depth + 1} for run in sources]}


@dataclass
class Column:
    """One variant of a fan-out as the chat shows it side by side."""

    run: Run
    answer: str
    cost_usd: float | None
    index: int = 1  # 1-based, in start order


def answers_of(runs) -> dict:
    """``{run_id: answer}``: each run's last plain assistant message (no tool calls), the answer a
    fan-out column, a fuse dialog and a digest draft show; a run without one is absent. One query."""
    return dict(Message.objects.filter(run__in=runs, role=Role.ASSISTANT, tool_calls__isnull=True)
                .order_by("run_id", "position").values_list("run_id", "content"))


def fan_out_columns(fan_out_id) -> list[Column]:
    """The columns of fan-out ``fan_out_id`` (in start order): its runs not pruned, each with its
    answer and cost. Three queries (runs, answers, prices)."""
    members = FanOut.runs.through.objects.filter(fanout_id=fan_out_id).values("run_id")
    runs = list(Run.objects.filter(pk__in=members, pruned_by__isnull=True).select_related("connection", "agent")
                .order_by("created_at", "id"))
    answers = answers_of(runs)
    prices = prices_for((run.connection_id, run.model) for run in runs)
    columns = []
    for index, run in enumerate(runs, start=1):
        price = prices.get((run.connection_id, run.model))
        cost = price.cost(run.prompt_tokens, run.completion_tokens) if price is not None and \
            run.prompt_tokens is not None and run.completion_tokens is not None else None
        columns.append(Column(run=run, answer=answers.get(run.pk, ""), cost_usd=cost, index=index))
    return columns


def fan_out_column(run: Run) -> Column:
    """The column of ``run`` in its fan-out (its position among the fan-out's runs). Raises NotFound
    when ``run`` was not started by a fan-out. Four queries."""
    fan_out = fan_out_of(run.pk)
    column = next((c for c in fan_out_columns(fan_out.pk) if c.run.pk == run.pk), None) if fan_out else None
    if column is None:
        raise NotFound("That run is not part of a fan-out.")
    return column


def merge_sources(session: Session, target: Run, limit: int = 50) -> list[dict]:
    """Runs a merge into ``target`` may take as its source branch: the tips (runs without a child)
    and labelled runs of ``session``'s own tree that are not on the path to ``target``, newest first,
    at most ``limit``: ``[{"run", "name"}]``. Three queries."""
    on_path = Run.objects.ancestor_of(target, inclusive=True).values("pk")
    labels = dict(BranchLabel.objects.filter(session=session).visible().values_list("run_id", "name"))
    runs = (Run.objects.filter(session=session, pruned_by__isnull=True, status="succeeded").exclude(pk__in=on_path)
            .exclude(children__pruned_by__isnull=True, children__session=session).order_by("-created_at")[:limit])
    found = {run.pk: {"run": run, "name": labels.get(run.pk, "")} for run in runs}
    for run in Run.objects.filter(pk__in=[pk for pk in labels if pk not in found]).exclude(pk__in=on_path):
        found[run.pk] = {"run": run, "name": labels[run.pk]}
    return sorted(found.values(), key=lambda row: row["run"].created_at, reverse=True)[:limit]


def branch_turns(target: Run, source: Run) -> list[dict]:
    """The source branch's turns since the common ancestor with ``target``, for the merge dialog:
    ``[{"run", "input", "answer"}]`` (two path reads and one message query)."""
    since = branch_since(target, source)
    texts: dict = {}
    for message in carried_messages([run.pk for run in since.runs]):
        texts.setdefault(message.run_id, {})[message.role] = message.content
    return [{"run": run, "input": texts.get(run.pk, {}).get("user", ""),
             "answer": texts.get(run.pk, {}).get("assistant", "")} for run in since.runs]


def fuse_candidates(run: Run) -> list[dict]:
    """The versions of ``run``'s turn the fuse dialog offers: its siblings not pruned (``run``
    included), in the order the chat's ‹ k/n › counts them: ``[{"run", "version", "answer"}]``
    (``answer``: the last plain assistant message, "" when none). Two queries."""
    runs = list(Run.objects.sibling_of(run).unpruned().select_related("connection", "agent")
                .order_by("created_at", "id"))
    answers = answers_of(runs)
    return [{"run": r, "version": index, "answer": answers.get(r.pk, "")} for index, r in enumerate(runs, start=1)]
