"""From a tree of messages (ChatGPT's ``mapping``, Open WebUI's ``history``, ShareGPT's list) to a tree
of runs: Arbor's turns.

The rule, applied to every branch (see README, "Import and export"):

* A run starts at a user message whose parent is not a user message (or that has no parent); every
  following non-user message (assistant answers, tool calls, tool results, reasoning) belongs to it,
  in order, until the next user message. Consecutive user messages stay in one run.
* A node inside a run with several continuations (a regenerated answer, a second tool result)
  splits the run: each continuation becomes a sibling run holding its own copy of the messages so
  far. Regenerations are thus sibling runs with the same input, as Arbor's "regenerate" makes them.
  Edited prompts are sibling user messages, so sibling runs under the same parent run.
* System messages at a run boundary (ChatGPT's hidden system node, custom instructions, a system
  turn of ShareGPT) become the next run's ``params["system"]``; inside a run they stay messages.
* A run that would start with an assistant or tool message gets an empty user input marked
  ``metadata["placeholder"]`` so position 0 is always the user input.
* Nodes without a message (ChatGPT's root) are spliced out: their children take their place.
* A parent id that is not in the conversation makes the node a root (a warning); a cycle makes the
  conversation fail (:class:`~archive.drafts.Skip`), since no order of its messages is right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .drafts import MessageDraft, RunDraft, Skip


@dataclass
class MessageNode:
    """One node of a source's message tree; ``message`` None for a structural node."""

    id: str
    parent: str | None
    children: list[str] = field(default_factory=list)
    message: MessageDraft | None = None


_BOUNDARY = {"user", "system"}


def runs_from_tree(
    nodes: dict[str, MessageNode], *, current: str | None = None, default_model: str = "unknown",
    default_time=None, warnings: list[str] | None = None,
) -> tuple[list[RunDraft], int | None]:
    """The runs of a message tree (parents first, depths set) and the index of the active run.

    ``current``: the node the source had on screen (ChatGPT ``current_node``, Open WebUI
    ``currentId``); the active run is the run ending with it. A tree without messages gives no runs
    (an empty session, with a warning). Raises Skip on a cycle.
    """
    warnings = warnings if warnings is not None else []
    children, roots = _resolve(nodes, warnings)
    eff_children, eff_roots = _splice(nodes, children, roots)
    if not eff_roots:
        warnings.append("the conversation has no messages: imported as an empty session")
        return [], None

    runs: list[RunDraft] = []
    run_nodes: list[list[str]] = []
    placeholders = 0
    # Stack items: (node id, messages of the run in progress, their node ids, parent run, pending
    # system, the time the run's branch began when it split from siblings inside a run)
    stack: list[tuple] = [(root, [], [], None, [], None) for root in reversed(eff_roots)]
    while stack:
        node_id, prefix, prefix_ids, parent_run, pending, branched_at = stack.pop()
        message = nodes[node_id].message
        kids = eff_children.get(node_id, [])
        if not prefix and message.role == "system" and kids:
            for kid in reversed(kids):
                stack.append((kid, [], [], parent_run, [*pending, message], None))
            continue
        # (A system message at the end of a branch goes on: a run of its own, placeholder input.)
        if not prefix and message.role != "user":
            placeholders += 1
            prefix = [MessageDraft(role="user", content="", metadata={"placeholder": True},
                                   created_at=message.created_at)]
            prefix_ids = [""]
        here = [*prefix, message]
        here_ids = [*prefix_ids, node_id]
        starters = [k for k in kids if message.role not in _BOUNDARY and nodes[k].message.role in _BOUNDARY]
        continuing = [k for k in kids if k not in starters]
        index = None
        if starters or not continuing:
            index = _emit(
                runs, run_nodes, here, here_ids, parent_run, pending, default_model, default_time, branched_at,
            )
        split = len(continuing) > 1 or (continuing and starters)
        for kid in reversed(continuing):
            stack.append((kid, here, here_ids, parent_run, pending,
                          (nodes[kid].message.created_at or branched_at) if split else branched_at))
        for kid in reversed(starters):
            stack.append((kid, [], [], index, [], None))
    if placeholders:
        warnings.append(f"{placeholders} run(s) began without a user message: given an empty placeholder input")
    return runs, _active(runs, run_nodes, current, warnings)


def _resolve(nodes: dict[str, MessageNode], warnings: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Children by parent pointer (ordered as the parent lists them, then by appearance) and roots.

    Raises Skip when some nodes are not reachable from any root (a cycle).
    """
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    missing = 0
    for node in nodes.values():
        parent = node.parent
        if parent is not None and (parent not in nodes or parent == node.id):
            missing += 1
            parent = node.parent = None
        if parent is None:
            roots.append(node.id)
        else:
            children.setdefault(parent, []).append(node.id)
    for parent_id, kids in children.items():
        listed = {k: i for i, k in enumerate(nodes[parent_id].children)}
        if len(kids) > 1:
            kids.sort(key=lambda k: listed.get(k, len(listed)))
    if missing:
        warnings.append(f"{missing} message(s) named a parent that is not in the conversation: made roots")
    seen = 0
    stack = list(roots)
    visited: set[str] = set()
    while stack:
        node_id = stack.pop()
        if node_id in visited:
            continue
        visited.add(node_id)
        seen += 1
        stack.extend(children.get(node_id, ()))
    if seen != len(nodes):
        stray = next(n for n in nodes if n not in visited)
        raise Skip(f"the message graph has a cycle ({len(nodes) - seen} message(s) never reach a root, e.g. {stray!r})")
    return children, roots


def _splice(nodes, children, roots) -> tuple[dict[str, list[str]], list[str]]:
    """Remove nodes without a message; their children take their place in order."""
    def expand(ids: list[str]) -> list[str]:
        out: list[str] = []
        stack = list(reversed(ids))
        while stack:
            node_id = stack.pop()
            if nodes[node_id].message is None:
                stack.extend(reversed(children.get(node_id, [])))
            else:
                out.append(node_id)
        return out

    eff = {node_id: expand(kids) for node_id, kids in children.items() if nodes[node_id].message is not None}
    return eff, expand(roots)


def _emit(runs, run_nodes, messages, node_ids, parent_run, pending, default_model, default_time, branched_at) -> int:
    """Append the run of ``messages``; it starts when its first message was written or, for a run
    split from siblings inside a turn (a regenerated answer), when its own branch began."""
    answer = next((m for m in reversed(messages) if m.role == "assistant"), None)
    times = [m.created_at for m in messages if m.created_at is not None]
    parent = runs[parent_run] if parent_run is not None else None
    start = branched_at or (times[0] if times else (parent.finished_at if parent else default_time))
    params = {}
    if pending:
        params["system"] = "\n\n".join(m.content for m in pending)
    usage = (answer.usage if answer else None) or {}
    run = RunDraft(
        messages=[_copy(m) for m in messages],
        parent=parent_run,
        depth=0 if parent is None else parent.depth + 1,
        model=(answer.model if answer and answer.model else default_model) or "unknown",
        params=params,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=answer.finish_reason if answer else "",
        created_at=start,
        started_at=start,
        finished_at=times[-1] if times else start,
    )
    runs.append(run)
    run_nodes.append(node_ids)
    return len(runs) - 1


def _copy(message: MessageDraft) -> MessageDraft:
    return MessageDraft(
        role=message.role, content=message.content, name=message.name, tool_calls=message.tool_calls,
        tool_call_id=message.tool_call_id, metadata=message.metadata, created_at=message.created_at,
        token_count=message.token_count,
    )


def _active(runs, run_nodes, current, warnings) -> int | None:
    if not runs:
        return None
    if current:
        ending = [i for i, ids in enumerate(run_nodes) if ids[-1] == current]
        if ending:
            return ending[0]
        containing = [i for i, ids in enumerate(run_nodes) if current in ids]
        if containing:
            return containing[0]
        warnings.append(f"the current message {current!r} is not in the conversation: showing the newest branch")
    # The newest leaf run (by its last time), else the last one emitted.
    parents = {r.parent for r in runs}
    leaves = [i for i in range(len(runs)) if i not in parents]
    if not leaves:
        return len(runs) - 1
    return max(leaves, key=lambda i: (runs[i].finished_at is not None, runs[i].finished_at or 0, i))
