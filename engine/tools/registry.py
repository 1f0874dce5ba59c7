"""The tool registry: a tool is a name, a description, a JSON-Schema of its arguments (the OpenAI
``tools`` format) and a function ``(ToolContext, arguments: dict) -> str``. A tool's failure is its
result, prefixed with ``Error:``, for the model to read: it does not fail the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from conversations.models import Message, Run, Step
from memory.models import Agent

MAX_RESULT_CHARS = 8000


class ToolError(Exception):
    """A tool could not do what was asked; the message is what the model reads."""


@dataclass
class ToolContext:
    """What a tool may use: the run, the agent answering it, the tool's step, and ``position`` —
    the position of the assistant message that requested the call (a nested agent sees the run's
    own messages before it)."""

    run: Run
    agent: Agent | None
    step: Step
    position: int
    path: list[Message] | None = None


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict
    func: Callable[[ToolContext, dict], str]

    def schema(self) -> dict:
        """The tool in the OpenAI ``tools`` format."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


REGISTRY: dict[str, Tool] = {}


def register(tool: Tool) -> Tool:
    REGISTRY[tool.name] = tool
    return tool


def tools_for(agent: Agent | None) -> list[Tool]:
    """The registry tools ``agent`` lists (unknown names are ignored); none without an agent."""
    if agent is None:
        return []
    return [REGISTRY[name] for name in (agent.tools or []) if name in REGISTRY]


@dataclass
class ToolResult:
    content: str
    ok: bool = True
    data: dict = field(default_factory=dict)


def run_tool(name: str, arguments: str, context: ToolContext, allowed: list[Tool]) -> ToolResult:
    """Execute one requested call. Never raises for a tool's own failure: the result says ``Error: ...``."""
    tool = next((t for t in allowed if t.name == name), None)
    if tool is None:
        return ToolResult(f"Error: no tool named {name!r} is available.", ok=False)
    try:
        args = json.loads(arguments or "{}")
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
    except ValueError as exc:
        return ToolResult(f"Error: the arguments are not valid JSON ({exc}).", ok=False)
    try:
        content = tool.func(context, args)
    except ToolError as exc:
        return ToolResult(f"Error: {exc}", ok=False)
    if len(content) > MAX_RESULT_CHARS:
        content = content[:MAX_RESULT_CHARS] + f"\n[… {len(content) - MAX_RESULT_CHARS} more characters cut]"
    return ToolResult(content)
