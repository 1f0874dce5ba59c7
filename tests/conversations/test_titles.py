"""Session titles written in the background by the model after the first answer (conversations.tasks):
a real worker with titles on asks the scripted model and stores its title; a title the user set is
kept; a failing endpoint keeps the current title quietly; the setting turns it off."""

from __future__ import annotations

import pytest

from conversations import services
from conversations.models import Session
from conversations.receivers import title_after_first_answer
from conversations.tasks import INSTRUCTION, first_message_title, tidy_title, title_session
from tests.support.factories import RunFactory, SessionFactory
from tests.support.processes import free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "I want to see Porto in spring, what should I not miss? [[reply:Three days in Porto]]"


def _title_requests(llm_server) -> list[dict]:
    return [r["body"] for r in llm_server.requests if r["body"].get("messages", [{}])[0].get("content") == INSTRUCTION]


@pytest.mark.worker
def test_a_worker_titles_a_new_session_after_its_first_answer_only(worker_factory, llm_server, user):
    worker_factory(ARBOR_CHAT_TITLES="true")
    session = services.session_create(owner=user)
    run = services.run_start(session=session, input=QUESTION)
    assert Session.objects.get(pk=session.pk).title == first_message_title(QUESTION)  # at once, from the message
    wait_for(lambda: Session.objects.get(pk=session.pk).title == "Three days in Porto", timeout=30,
             message="the background title")
    sent = _title_requests(llm_server)
    assert len(sent) == 1 and sent[0]["stream"] is False and sent[0]["max_tokens"] == 24
    assert sent[0]["messages"][1]["content"].startswith("User: I want to see Porto") and "Assistant: Three" in \
        sent[0]["messages"][1]["content"]
    # The second turn asks for no title, and a user's own title is never replaced.
    services.run_start(session=Session.objects.get(pk=session.pk), input="And in summer?")  # the first has finished
    named = services.session_create(owner=user, title="My own name")
    services.run_start(session=named, input="Hello [[reply:Greetings exchanged]]")
    wait_for(lambda: len([r for r in llm_server.requests if not _is_title(r)]) >= 3, timeout=30,
             message="both answers")
    assert Session.objects.get(pk=named.pk).title == "My own name"
    assert run.session_id == session.pk and len(_title_requests(llm_server)) == 1


def _is_title(record) -> bool:
    return record["body"].get("messages", [{}])[0].get("content") == INSTRUCTION


def test_the_title_is_kept_when_the_user_renamed_the_session_first(llm_server, user):
    session = SessionFactory(owner=user, title="Renamed by me")
    run = RunFactory(session=session, turn=(QUESTION, "Three days in Porto"))
    assert title_session(str(run.pk)) == "kept"
    assert Session.objects.get(pk=session.pk).title == "Renamed by me" and _title_requests(llm_server) == []


def test_a_failing_endpoint_keeps_the_first_message_title_quietly(llm_server, user, settings, caplog):
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    session = SessionFactory(owner=user, title=first_message_title(QUESTION))
    run = RunFactory(session=session, turn=(QUESTION, "Three days in Porto"))
    caplog.set_level("INFO", logger="conversations.tasks")
    assert title_session(str(run.pk)) == "failed"
    assert Session.objects.get(pk=session.pk).title == first_message_title(QUESTION)
    assert [r.levelname for r in caplog.records] == ["INFO"] and "keeps its title" in caplog.records[0].message


def test_an_error_status_or_an_empty_answer_keeps_the_title(llm_server, user):
    for question, expected in ((f"{QUESTION} [[status:500]]", "failed"), ("Say nothing [[reply: ]]", "kept")):
        session = SessionFactory(owner=user, title=first_message_title(question))
        run = RunFactory(session=session, turn=(question, "whatever"))
        assert title_session(str(run.pk)) == expected
        assert Session.objects.get(pk=session.pk).title == first_message_title(question)


def test_a_second_run_of_the_task_changes_nothing(llm_server, user):
    session = SessionFactory(owner=user, title=first_message_title(QUESTION))
    run = RunFactory(session=session, turn=(QUESTION, "Three days in Porto"))
    assert title_session(str(run.pk)) == "titled"
    assert title_session(str(run.pk)) == "kept"
    assert Session.objects.get(pk=session.pk).title == "Three days in Porto" and len(_title_requests(llm_server)) == 1


def test_the_setting_and_later_turns_send_no_title_task(user, settings, monkeypatch):
    sent = []
    monkeypatch.setattr("core.queue.send", lambda name, *args, queue: sent.append((name, args)))
    session = SessionFactory(owner=user, title="x")
    first = RunFactory(session=session)
    second = RunFactory(session=session, parent_run=first)
    settings.ARBOR_CHAT_TITLES = True
    title_after_first_answer(sender=None, run=second, status="succeeded")
    title_after_first_answer(sender=None, run=first, status="failed")
    assert sent == []
    title_after_first_answer(sender=None, run=first, status="succeeded")
    assert sent == [("conversations.title_session", (str(first.pk),))]
    settings.ARBOR_CHAT_TITLES = False
    title_after_first_answer(sender=None, run=first, status="succeeded")
    assert len(sent) == 1


@pytest.mark.parametrize(("answer", "title"), [
    ("Title: \"A Weekend in Porto.\"", "A Weekend in Porto"),
    ("\n\n**Bread Baking Basics**\nmore text", "Bread Baking Basics"),
    ("x" * 90, "x" * 60),
    ("", ""), (None, ""), ("bad\x00title", ""),
])
def test_tidy_title(answer, title):
    assert tidy_title(answer) == title
