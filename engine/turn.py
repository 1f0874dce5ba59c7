"""One attempt at a run as the engine carries it from claim to ``done``: what the turn read and
derived once (the path, the memory ids of its runs, the endpoint, the token counter, the budget),
so that building the context, every tool round, finalizing and compaction's measuring reuse them
instead of reading or deriving them again."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from connections.endpoint import Endpoint
from connections.selectors import endpoint_for
from conversations.models import Run, Step
from core.params import model_params
from core.tokens import TokenCounter, counter_for
from memory.policy import Budget
from streams.backends import RunStream

from .context import read_path, run_budget
from .tools import Tool, tools_for


@dataclass
class Totals:
    """Usage of every model call of a run (tool rounds add up); ``counted`` when any was counted by
    us; ``first_token_at``: when the run's first text delta arrived (None: none did)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    counted: bool = False
    first_token_at: datetime | None = None


@dataclass
class Turn:
    """One attempt at a run, as the tool loop sees it.

    ``path``: the messages on the path to the run that its context can send (from the newest ready
    compaction's start on, plus the pinned turns, with the compactions and pins it was cut by:
    :func:`engine.context.read_path`), read once and extended with the run's tool traffic (and, at
    the end, its answer) as they are written; ``memory_ids``: ``{run_id: memory_id}`` of the path's
    runs; ``position``: the next free message position of the run;
    ``counter``: the token counter of the run's endpoint; ``budget``: the context window and the
    tokens reserved for the answer (:func:`engine.context.run_budget`), derived once; ``build``:
    the first context build's accounting, stored with the first model call.
    """

    run: Run
    stream: RunStream
    endpoint: Endpoint
    counter: TokenCounter
    budget: Budget
    path: list = field(default_factory=list)
    memory_ids: dict = field(default_factory=dict)
    position: int = 1
    tools: list[Tool] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)
    llm_step: Step | None = None
    build: dict = field(default_factory=dict)

    @classmethod
    def start(cls, run: Run, stream: RunStream) -> Turn:
        """Five queries at any depth (the compactions and pins on the path, its runs, the messages
        the context can send, the model's context window; the default connection once more when the
        run has none). Raises ConnectionUnusable (naming it) when the run's connection is disabled
        or deleted."""
        endpoint = endpoint_for(run.connection)
        path, memory_ids = read_path(run, run.agent)
        return cls(
            run=run, stream=stream, endpoint=endpoint, path=path, memory_ids=memory_ids,
            tools=tools_for(run.agent), params=model_params(run.params), counter=counter_for(endpoint.base_url),
            budget=run_budget(run),
            position=max((m.position for m in path if m.run_id == run.pk), default=0) + 1,
        )
