"""factory_boy factories: users, the conversation tree (sessions, runs), agents, connections,
comparisons, branch labels and shares, import jobs; ``build_chain`` for long branches in bulk; and
``add_run``/``add_chain``/``new_input`` for branches of runs with agents, memory ids and tool traffic."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from archive.models import ImportJob
from comparisons.models import Comparison
from connections.models import Connection
from conversations.models import BranchLabel, BranchShare, Message, Role, Run, RunStatus, Session
from memory.models import Agent


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-123456")


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    owner = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Session {n}")


class RunFactory(factory.django.DjangoModelFactory):
    """A finished run (succeeded) with its user and assistant messages."""

    class Meta:
        model = Run
        skip_postgeneration_save = True

    session = factory.SubFactory(SessionFactory)
    parent_run = None
    depth = factory.LazyAttribute(lambda o: 0 if o.parent_run is None else o.parent_run.depth + 1)
    status = RunStatus.SUCCEEDED
    model = "fake-model"
    finished_at = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def turn(obj, create, extracted, **kwargs):
        if not create:
            return
        text_in, text_out = extracted if extracted else (f"question {obj.depth}", f"answer {obj.depth}")
        Message.objects.create(run=obj, position=0, role=Role.USER, content=text_in)
        if text_out is not None:
            Message.objects.create(run=obj, position=1, role=Role.ASSISTANT, content=text_out)


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Agent {n}")


class ConnectionFactory(factory.django.DjangoModelFactory):
    """A user's connection to an OpenAI-compatible endpoint on loopback (never called unless a test does)."""

    class Meta:
        model = Connection

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Connection {n}")
    base_url = "http://127.0.0.1:9/v1"


class ComparisonFactory(factory.django.DjangoModelFactory):
    """A comparison of the owner's session from a finished branch point (no variants: add them)."""

    class Meta:
        model = Comparison

    owner = factory.SubFactory(UserFactory)
    session = factory.SubFactory(SessionFactory, owner=factory.SelfAttribute("..owner"))
    branch_point = factory.SubFactory(RunFactory, session=factory.SelfAttribute("..session"))
    prompts = factory.LazyFunction(lambda: ["a prompt"])


class BranchLabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BranchLabel

    session = factory.SubFactory(SessionFactory)
    run = factory.SubFactory(RunFactory, session=factory.SelfAttribute("..session"))
    name = factory.Sequence(lambda n: f"label {n}")


class BranchShareFactory(factory.django.DjangoModelFactory):
    """A live share link (no expiry) to the branch ending at ``run``."""

    class Meta:
        model = BranchShare

    session = factory.SubFactory(SessionFactory)
    run = factory.SubFactory(RunFactory, session=factory.SelfAttribute("..session"))


class ImportJobFactory(factory.django.DjangoModelFactory):
    """A queued import job row (no file behind ``path``: for pages and lookups, not the importer)."""

    class Meta:
        model = ImportJob

    owner = factory.SubFactory(UserFactory)
    filename = factory.Sequence(lambda n: f"export-{n}.json")
    path = factory.LazyAttribute(lambda o: f"/nonexistent/{o.filename}")


def build_chain(session: Session, depth: int, parent: Run | None = None) -> list[Run]:
    """``depth`` finished runs in a line under ``parent``, with bulk inserts (fast at depth 5,000)."""
    import uuid

    runs: list[Run] = []
    messages: list[Message] = []
    now = timezone.now()
    base = 0 if parent is None else parent.depth + 1
    for i in range(depth):
        run = Run(id=uuid.uuid4(), session=session, parent_run=runs[-1] if runs else parent, depth=base + i,
                  status=RunStatus.SUCCEEDED, model="fake-model", created_at=now, finished_at=now)
        runs.append(run)
        messages.append(Message(run=run, position=0, role=Role.USER, content=f"question {base + i}"))
        messages.append(Message(run=run, position=1, role=Role.ASSISTANT, content=f"answer {base + i}"))
    Run.objects.bulk_create(runs, batch_size=500)
    Message.objects.bulk_create(messages, batch_size=1000)
    if runs:
        Session.objects.filter(pk=session.pk).update(active_run=runs[-1])
        session.active_run = runs[-1]
    return runs


def add_run(session, parent: Run | None, user_text: str, answer: str | None = "ok", *, agent: Agent | None = None,
            memory_id: str | None = None, tool_traffic: list[dict] | None = None,
            status: str = RunStatus.SUCCEEDED) -> Run:
    """A finished run under ``parent``: its input, optional tool traffic (OpenAI-format dicts), answer."""
    run = Run.objects.create(
        session=session, parent_run=parent, depth=0 if parent is None else parent.depth + 1, status=status,
        model="fake-model", agent=agent, memory_id=memory_id or (agent.memory_id if agent else "default"),
        finished_at=timezone.now(),
    )
    Message.objects.create(run=run, position=0, role=Role.USER, content=user_text)
    position = 1
    for data in tool_traffic or []:
        Message.objects.create(run=run, position=position, role=data["role"], content=data.get("content") or "",
                               tool_calls=data.get("tool_calls"), tool_call_id=data.get("tool_call_id", ""),
                               name=data.get("name", ""))
        position += 1
    if answer is not None:
        Message.objects.create(run=run, position=position, role=Role.ASSISTANT, content=answer)
    return run


def add_chain(session, parent: Run | None, turns: int, *, prefix: str = "turn", words: int = 0, **kwargs) -> list[Run]:
    """``turns`` finished runs in a line under ``parent`` (``add_run`` each; ``words`` of filler per message)."""
    runs = []
    for i in range(turns):
        filler = (" " + " ".join(["filler"] * words)) if words else ""
        parent = add_run(session, parent, f"{prefix} {i} question{filler}", f"{prefix} {i} answer{filler}", **kwargs)
        runs.append(parent)
    return runs


def new_input(session, parent: Run | None, text: str = "new input", *, agent: Agent | None = None,
              memory_id: str | None = None) -> Run:
    """A queued run (as run_start leaves it) with only its input."""
    return add_run(session, parent, text, None, agent=agent, memory_id=memory_id, status=RunStatus.QUEUED)
