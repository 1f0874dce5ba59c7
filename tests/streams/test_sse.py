"""Server-Sent Events through a real ASGI server (uvicorn): live deltas, Last-Event-ID resume,
several readers, replay of finished runs, and the HTML flavour for the htmx SSE extension."""

from __future__ import annotations

import threading

import httpx
import pytest
from httpx_sse import connect_sse

from conversations import services
from conversations.models import Message, Run
from streams.backends import get_stream
from tests.support.factories import SessionFactory
from tests.support.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def read_events(url, token, last_event_id=None, stop_after=None):
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    events = []
    with httpx.Client(timeout=30) as client, connect_sse(client, "GET", url, headers=headers) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            events.append(sse)
            if sse.event == "done" or (stop_after and len(events) >= stop_after):
                break
    return events


def text_of(events) -> str:
    import json

    return "".join(json.loads(e.data)["text"] for e in events if e.event == "delta")


def test_stream_delivers_every_delta_then_done(asgi_server, celery_worker, user, api_token):
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="[[tokens:40]] [[delay:0.01]]")
    events = read_events(f"{asgi_server}/api/runs/{run.pk}/events", api_token)
    assert events[-1].event == "done" and '"succeeded"' in events[-1].data
    assert text_of(events) == Message.objects.get(run=run, position=1).content
    assert len(text_of(events).split()) == 40
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids) and all(ids)


def test_reconnect_with_last_event_id_continues_without_gaps_or_repeats(asgi_server, celery_worker, user, api_token):
    """A reload mid-stream: the first connection stops after 10 events; the second, with
    Last-Event-ID, gets exactly the rest."""
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="[[tokens:120]] [[delay:0.02]]")
    url = f"{asgi_server}/api/runs/{run.pk}/events"
    first = read_events(url, api_token, stop_after=10)
    assert Run.objects.get(pk=run.pk).status in ("queued", "running")  # still streaming
    rest = read_events(url, api_token, last_event_id=first[-1].id)
    assert not {e.id for e in first} & {e.id for e in rest}
    full = text_of(first + rest)
    assert full == Message.objects.get(run=run, position=1).content and len(full.split()) == 120


def test_two_readers_see_the_same_stream(asgi_server, celery_worker, user, api_token):
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="[[tokens:60]] [[delay:0.02]]")
    url = f"{asgi_server}/api/runs/{run.pk}/events"
    results = {}

    def reader(name):
        results[name] = read_events(url, api_token)

    threads = [threading.Thread(target=reader, args=(n,)) for n in ("tab1", "tab2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [e.id for e in results["tab1"]] == [e.id for e in results["tab2"]]
    assert text_of(results["tab1"]) == text_of(results["tab2"]) != ""


def test_finished_run_replays_and_survives_an_expired_stream(asgi_server, celery_worker, user, api_token):
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="replay me")
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished)
    url = f"{asgi_server}/api/runs/{run.pk}/events"
    assert text_of(read_events(url, api_token)) == "Echo: replay me"
    get_stream().delete(run.pk)  # the retention period has passed
    events = read_events(url, api_token)
    assert text_of(events) == "Echo: replay me" and events[-1].event == "done"


def test_html_stream_escapes_model_output(asgi_server, celery_worker, user, client):
    """The htmx flavour sends deltas as escaped HTML text: model output never becomes markup."""
    session = SessionFactory(owner=user)
    run = services.run_start(session=session, input="[[reply:<img src=x onerror=alert(1)> done]]")
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished)
    client.force_login(user)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    body = httpx.get(f"{asgi_server}/s/{session.pk}/runs/{run.pk}/stream", cookies=cookies, timeout=10).text
    deltas = "".join(line[len("data: "):] for line in body.split("\n") if line.startswith("data: ") and "{" not in line)
    assert deltas == "&lt;img src=x onerror=alert(1)&gt; done"
    assert "<img" not in body


def test_events_of_another_users_run_are_404(asgi_server, celery_worker, user, other_user, api_token):
    session = SessionFactory(owner=other_user)
    run = services.run_start(session=session, input="secret")
    response = httpx.get(f"{asgi_server}/api/runs/{run.pk}/events", headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 404


def test_streams_one_after_another_reuse_their_redis_connection():
    """A stream's reads borrow a connection from the event loop's pool: 20 streams read one after
    another on one loop connect to Redis once, not once each (as a client per stream did)."""
    import asyncio

    import redis
    from django.conf import settings

    stream = get_stream()
    if not settings.ARBOR_STREAM_URL.startswith("redis"):
        pytest.skip("the Redis stream backend")
    run_ids = [f"pool-test-{i}-{threading.get_ident()}" for i in range(20)]
    for run_id in run_ids:
        stream.publish(run_id, "delta", {"text": "hi"})
        stream.publish(run_id, "done", {"status": "succeeded"})
    info = redis.Redis.from_url(settings.ARBOR_STREAM_URL)

    async def read_all():
        seen = []
        for run_id in run_ids:
            async for event in stream.listen(run_id, None, 1.0):
                seen.append(event.type)
                if event.type == "done":
                    break
        return seen

    before = info.info("stats")["total_connections_received"]
    seen = asyncio.run(read_all())
    connected = info.info("stats")["total_connections_received"] - before
    for run_id in run_ids:
        stream.delete(run_id)
    assert seen == ["delta", "done"] * 20
    assert connected <= 2, f"{connected} connections for 20 streams read one after another"
