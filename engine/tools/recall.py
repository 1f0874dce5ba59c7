"""``recall``: semantic search over the user's past messages (:func:`search.selectors.search_messages`)."""

from __future__ import annotations

from search.selectors import search_messages

from .registry import Tool, ToolContext, ToolError, register


def _recall(context: ToolContext, args: dict) -> str:
    query = args.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolError("give {\"query\": <what to look for>}")
    top_k = args.get("top_k", 5)
    if not isinstance(top_k, int) or not 1 <= top_k <= 20:
        top_k = 5
    try:
        hits = search_messages(user=context.run.session.owner, query=query, top_k=top_k + 2)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    except Exception as exc:  # SemanticSearchUnavailable and the like: the message says why
        raise ToolError(f"memory search is unavailable: {exc}") from None
    lines = []
    for hit in hits:
        if str(hit.run_id) == str(context.run.pk):
            continue  # this run's own input is not a memory
        lines.append(f"- [{hit.role}, session {hit.session_title!r}, score {hit.score:.2f}] {hit.content}")
        if len(lines) == top_k:
            break
    return "\n".join(lines) if lines else "No matching memories."


register(Tool(
    name="recall",
    description="Search the user's past conversations for messages relevant to a query.",
    parameters={"type": "object", "properties": {
        "query": {"type": "string"}, "top_k": {"type": "integer", "minimum": 1, "maximum": 20},
    }, "required": ["query"]},
    func=_recall,
))
