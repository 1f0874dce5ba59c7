"""The tool registry: tools an agent may call during a run (names listed in ``Agent.tools``).

Each tool is a module here that registers itself on import. A tool is a name, a description, a
JSON-Schema of its arguments (the OpenAI ``tools`` format) and a function
``(ToolContext, arguments: dict) -> str``. Registered here:

- ``calculator``: arithmetic with simpleeval (https://github.com/danthedeckie/simpleeval) — an AST
  evaluator with an allow-list of operators, no attribute access, no ``eval``;
- ``call_agent``: a nested agent answers a prompt; it runs as a child step (kind ``agent_call``) of
  the calling run and receives that run's context according to *its own* memory settings
  (memory id, window, budget), plus the prompt;
- ``recall``: semantic search over the user's past messages (:func:`search.selectors.search_messages`).

A tool's failure (bad arguments, an unknown agent, a division by zero) is its result, prefixed with
``Error:``, for the model to read — it does not fail the run.
"""

from . import calculator, call_agent, recall  # noqa: F401 - each registers its tool
from .registry import REGISTRY, Tool, ToolContext, ToolError, ToolResult, register, run_tool, tools_for

__all__ = ["REGISTRY", "Tool", "ToolContext", "ToolError", "ToolResult", "register", "run_tool", "tools_for"]
