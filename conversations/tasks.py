"""A session's title written in the background by the model, after its first answer.

A new session is named at once from its first message (the first 60 characters,
:func:`conversations.services.run_start`). When that first run succeeds, the ``run_finished``
receiver (:mod:`conversations.receivers`) enqueues :func:`title_session`, which asks the run's own
connection and model for a short title of the exchange and stores it **only if the session still
has the title taken from its first message** (one conditional UPDATE): a title the user gave or
changed meanwhile is never overwritten, and running the task twice changes nothing more.

Any failure (endpoint down, an error status, a timeout, an empty or unusable answer) leaves the
current title as it is and logs one INFO line: a title is a nicety, never an error the user sees.
Turned off with ``ARBOR_CHAT_TITLES=false``.
"""

from __future__ import annotations

import logging
import re

import openai
from django.conf import settings

from connections.endpoint import SDK_HTTP
from connections.models import ConnectionUnusable
from connections.selectors import endpoint_for
from core import queue
from core.errors import InvalidInput
from core.text import clean_text

from .models import Message, Role, Run, RunStatus, Session

log = logging.getLogger(__name__)

TITLE_MAX_CHARS = 60  # as the title taken from the first message
EXCERPT_CHARS = 1500  # of the input and of the answer, in the request
TITLE_TIMEOUT = 20.0  # seconds for the whole call (read timeout); no retry
INSTRUCTION = ("Write a title of at most six words for the conversation below. Answer with the title only: "
               "no quotes, no full stop.")
_PREFIX = re.compile(r"^\s*(title\s*:\s*)", re.I)
_DECORATION = "\"'`*#_“”‘’«» \t"


def first_message_title(text: str) -> str:
    """The title a session gets from its first message: its words, one space apart, at most 60 characters."""
    return " ".join(text.split())[:TITLE_MAX_CHARS]


def tidy_title(answer: str | None) -> str:
    """The model's answer as a title: its first non-empty line without a ``Title:`` prefix,
    quotes, Markdown emphasis or a final full stop, at most 60 characters; "" when nothing usable
    (or a control character) is left."""
    line = next((ln for ln in (answer or "").splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line).strip(_DECORATION).rstrip(".").strip(_DECORATION)
    line = " ".join(line.split())[:TITLE_MAX_CHARS].strip()
    try:
        return clean_text(line, field="title", max_length=TITLE_MAX_CHARS, required=False)
    except InvalidInput:
        return ""


def _exchange(run: Run) -> tuple[str, str]:
    texts = dict(Message.objects.filter(run=run, role__in=[Role.USER, Role.ASSISTANT])
                 .order_by("position").values_list("role", "content"))  # the last assistant message: the answer
    return texts.get(Role.USER, ""), texts.get(Role.ASSISTANT, "")


def _ask_model(run: Run, question: str, answer: str) -> str:
    """The model's title of the exchange (its raw answer). Raises what the SDK raises."""
    endpoint = endpoint_for(run.connection)
    response = endpoint.client().with_options(timeout=TITLE_TIMEOUT, max_retries=0).chat.completions.create(
        model=run.model,
        messages=[{"role": "system", "content": INSTRUCTION},
                  {"role": "user", "content": f"User: {question[:EXCERPT_CHARS]}\n\n"
                                              f"Assistant: {answer[:EXCERPT_CHARS]}"}],
        max_tokens=24, temperature=0.2, stream=False,
    )
    return (response.choices[0].message.content or "") if response.choices else ""


@queue.task(queue.TITLE_SESSION, time_limit=60)
def title_session(run_id: str) -> str:
    """Title the session of ``run_id`` (its first run, succeeded) from that exchange. Returns what
    happened: ``titled``, ``kept`` (the title is not the first message's any more, or the model
    gave nothing usable), ``gone`` (no such run, not succeeded, session deleted) or ``failed``
    (the model call raised; the title is kept)."""
    run = Run.objects.select_related("session", "connection").filter(pk=run_id).first()
    if run is None or run.status != RunStatus.SUCCEEDED or run.session.is_deleted:
        return "gone"
    question, answer = _exchange(run)
    expected = first_message_title(question)
    if run.session.title != expected:
        return "kept"
    try:
        title = tidy_title(_ask_model(run, question, answer))
    except (openai.OpenAIError, SDK_HTTP.HTTPError, ConnectionUnusable, OSError) as exc:
        log.info("session %s keeps its title: the title request failed (%s)", run.session_id, type(exc).__name__)
        return "failed"
    if not title or title == expected:
        return "kept"
    changed = Session.objects.filter(pk=run.session_id, title=expected).update(title=title)
    return "titled" if changed else "kept"


def enqueue_title(run: Run) -> None:
    """Send :func:`title_session` for ``run`` when it is the first answer of a session still named
    after its first message and titles are on (``ARBOR_CHAT_TITLES``)."""
    if settings.ARBOR_CHAT_TITLES and run.parent_run_id is None:
        queue.send(queue.TITLE_SESSION, str(run.pk), queue=settings.ARBOR_RUN_QUEUE)
