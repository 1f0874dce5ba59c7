"""The tool registry: tools an agent may call during a run (names listed in ``Agent.tools``).

A tool is a name, a description, a JSON-Schema of its arguments (the OpenAI ``tools`` format) and a
function ``(ToolContext, arguments: dict) -> str``. Registered here:

- ``calculator``: arithmetic with simpleeval (https://github.com/danthedeckie/simpleeval) — an AST
  evaluator with an allow-list of operators, no attribute access, no ``eval``;
- ``call_agent``: a nested agent answers a prompt; it runs as a child step (kind ``agent_call``) of
  the calling run and receives that run's context according to *its own* memory settings
  (memory id, window, budget), plus the prompt;
- ``recall``: semantic search over the user's past messages (:mod:`memory.semantic`, when installed).

A tool's failure (bad arguments, an unknown agent, a division by zero) is its result, prefixed with
``Error:``, for the model to read — it does not fail the run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from conversations.models import Message, Run, RunStatus, Step, StepKind

from .models import Agent

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


# --- calculator ---------------------------------------------------------------------------------

def _calculator(context: ToolContext, args: dict) -> str:
    import simpleeval

    expression = args.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise ToolError("give an expression, for example {\"expression\": \"2 * (3 + 4)\"}")
    if len(expression) > 500:
        raise ToolError("the expression is longer than 500 characters")
    functions = {name: getattr(math, name) for name in (
        "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "log", "log10", "log2", "exp", "floor", "ceil",
        "factorial", "gcd", "radians", "degrees",
    )}
    functions.update({"abs": abs, "round": round, "min": min, "max": max})
    evaluator = simpleeval.SimpleEval(functions=functions, names={"pi": math.pi, "e": math.e, "tau": math.tau})
    try:
        value = evaluator.eval(expression)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (simpleeval.InvalidExpression, SyntaxError, TypeError, ValueError, OverflowError) as exc:
        raise ToolError(f"cannot evaluate {expression!r}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolError(f"{expression!r} is not a number")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(value)


register(Tool(
    name="calculator",
    description="Evaluate an arithmetic expression exactly: + - * / // % **, parentheses, sqrt, log, sin, pi, e.",
    parameters={"type": "object", "properties": {"expression": {"type": "string", "description": "e.g. 2*(3+4)"}},
                "required": ["expression"]},
    func=_calculator,
))


# --- call_agent ---------------------------------------------------------------------------------

def _call_agent(context: ToolContext, args: dict) -> str:
    """Run a nested agent inside the calling run; its context is built with its own memory settings."""
    from conversations.llm import describe_error, get_client, mask_secrets

    from .context import ContextOverflow, build_context

    name, prompt = args.get("agent"), args.get("prompt")
    if not isinstance(name, str) or not isinstance(prompt, str) or not prompt.strip():
        raise ToolError("give {\"agent\": <agent name>, \"prompt\": <what to ask>}")
    owner_id = context.run.session.owner_id
    nested = (Agent.objects.filter(name=name, owner_id=owner_id).first()
              or Agent.objects.filter(name=name, owner__isnull=True).first())
    if nested is None:
        raise ToolError(f"no agent named {name!r}")
    if context.agent is not None and nested.pk == context.agent.pk:
        raise ToolError("an agent cannot call itself")
    same_memory = nested.memory_id == context.run.memory_id
    try:
        built = build_context(
            context.run, agent=nested, memory_id=nested.memory_id,
            own_upto=context.position if same_memory else 0, tail=[{"role": "user", "content": prompt}],
            path=context.path,
        )
    except ContextOverflow as exc:
        raise ToolError(str(exc)) from None
    from conversations import context as ctx
    from conversations.services import ALLOWED_PARAMS

    model = nested.model or settings.ARBOR_MODEL
    params = {k: v for k, v in (nested.params or {}).items() if k in ALLOWED_PARAMS}
    params.setdefault("max_tokens", min(settings.ARBOR_MAX_OUTPUT_TOKENS, built.budget.reserved_output or 1))
    step = Step.objects.create(
        run=context.run, parent_step=context.step, kind=StepKind.AGENT_CALL, name=nested.name,
        request=mask_secrets({
            "agent": nested.name, "agent_id": nested.pk, "memory_id": nested.memory_id, "model": model,
            "params": params, "context": built.spec.to_json(), "message_count": len(built.messages),
            "sha256": ctx.digest(built.messages), "accounting": built.describe(),
        }),
    )
    try:
        response = get_client().chat.completions.create(model=model, messages=built.messages, stream=False, **params)
    except Exception as exc:  # noqa: BLE001 - the nested agent's failure is the tool's result
        etype, emsg = describe_error(exc)
        step.status, step.finished_at, step.error = RunStatus.FAILED, timezone.now(), {"type": etype, "message": emsg}
        step.save(update_fields=["status", "finished_at", "error"])
        raise ToolError(f"agent {name!r} failed: {emsg}") from None
    text = (response.choices[0].message.content or "") if response.choices else ""
    step.status, step.finished_at = RunStatus.SUCCEEDED, timezone.now()
    if response.usage is not None:
        step.prompt_tokens, step.completion_tokens = response.usage.prompt_tokens, response.usage.completion_tokens
    step.response = {"text": text, "finish_reason": response.choices[0].finish_reason if response.choices else ""}
    step.save()
    return text


register(Tool(
    name="call_agent",
    description="Ask another agent (by name) to answer a prompt; it sees this conversation as its memory "
                "settings allow.",
    parameters={"type": "object", "properties": {
        "agent": {"type": "string", "description": "the agent's name"},
        "prompt": {"type": "string", "description": "what to ask it"},
    }, "required": ["agent", "prompt"]},
    func=_call_agent,
))


# --- recall -------------------------------------------------------------------------------------

def _recall(context: ToolContext, args: dict) -> str:
    query = args.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolError("give {\"query\": <what to look for>}")
    top_k = args.get("top_k", 5)
    if not isinstance(top_k, int) or not 1 <= top_k <= 20:
        top_k = 5
    try:
        from . import semantic
    except ImportError:
        raise ToolError("semantic memory search is not installed on this server") from None
    try:
        hits = semantic.search_messages(user=context.run.session.owner, query=query, top_k=top_k + 2)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - SemanticSearchUnavailable and the like: the message says why
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
