"""``call_agent``: a nested agent answers a prompt inside the calling run, as a child step (kind
``agent_call``) of the tool call, receiving that run's context according to *its own* memory settings
(memory id, window, budget), plus the prompt. It answers on its own connection when it has one,
else on the calling run's (the calling agent's)."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from connections.models import ConnectionUnusable
from connections.selectors import endpoint_for
from conversations import context_spec as ctx
from conversations.models import RunStatus, Step, StepKind
from core.params import model_params
from core.redact import mask_secrets
from memory.models import Agent

from ..context import ContextOverflow, build_context
from ..llm import describe_error, get_client
from .registry import Tool, ToolContext, ToolError, register


def _call_agent(context: ToolContext, args: dict) -> str:
    """Run a nested agent inside the calling run; its context is built with its own memory settings."""
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
    try:
        endpoint = endpoint_for(nested.connection if nested.connection_id else context.run.connection)
    except ConnectionUnusable as exc:
        raise ToolError(f"agent {name!r} cannot answer: {exc}") from None
    model = nested.model or settings.ARBOR_MODEL
    params = model_params(nested.params)
    params.setdefault("max_tokens", min(settings.ARBOR_MAX_OUTPUT_TOKENS, built.budget.reserved_output or 1))
    step = Step.objects.create(
        run=context.run, parent_step=context.step, kind=StepKind.AGENT_CALL, name=nested.name,
        request=mask_secrets({
            "agent": nested.name, "agent_id": nested.pk, "memory_id": nested.memory_id, **endpoint.describe(),
            "model": model,
            "params": params, "context": built.spec.to_json(), "message_count": len(built.messages),
            "sha256": ctx.digest(built.messages), "accounting": built.describe(),
        }),
    )
    try:
        response = get_client(endpoint).chat.completions.create(model=model, messages=built.messages, stream=False,
                                                                **params)
    except Exception as exc:  # the nested agent's failure is the tool's result
        etype, emsg = describe_error(exc, endpoint)
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
