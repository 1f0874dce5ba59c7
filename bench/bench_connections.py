"""Model connections: what resolving a run's endpoint costs in the worker, the health check and the
model-list refresh against a scripted server (a list of 5 and of 2,000 models), and the chat page's
query count as a user's connections and models grow (the picker lists them all in one query)."""

from __future__ import annotations

from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext

from bench.harness import Bench, ms, percentile, timed
from connections import services
from connections.models import Connection, ConnectionModel
from connections.selectors import default_connection, endpoint_for
from tests.llm_server import FakeLLMServer
from tests.support.factories import SessionFactory, UserFactory, build_chain


def bench_endpoint_resolution(bench: Bench, user) -> None:
    default_connection()
    own = Connection.objects.create(owner=user, name="bench own", base_url=bench.llm_base_url, api_key="sk-bench")
    rows = []
    for label, connection in (("default (no connection)", None), ("a user's connection", own)):
        with CaptureQueriesContext(db) as queries:  # the run's connection is joined when the run is claimed
            endpoint_for(connection)
        times = timed(lambda c=connection: endpoint_for(c), repeat=200)
        rows.append([label, len(queries), ms(percentile(times, 50)), ms(percentile(times, 95))])
    bench.table("Resolving a run's endpoint in the worker (endpoint_for)",
                ["connection", "queries", "p50 ms", "p95 ms"], rows)


def bench_probe(bench: Bench, user) -> None:
    rows = []
    for count in (5, 2000):
        server = FakeLLMServer(models=[f"m-{i}" for i in range(count)]).start()
        try:
            connection = Connection.objects.create(owner=user, name=f"bench {count}", base_url=server.base_url)
            check = timed(lambda c=connection: services.connection_check(connection=c), repeat=20)
            refresh = timed(lambda c=connection: services.connection_refresh_models(connection=c), repeat=5, warmup=1)
            rows.append([count, ms(percentile(check, 50)), ms(percentile(refresh, 50)), ms(max(refresh)),
                         ConnectionModel.objects.filter(connection=connection).count()])
        finally:
            server.stop()
    bench.table("Health check and model-list refresh (scripted server on loopback)",
                ["models listed", "check p50 ms", "refresh p50 ms", "refresh max ms", "models stored"], rows)


def bench_chat_page(bench: Bench) -> None:
    rows = []
    for connections, models in ((1, 1), (10, 20), (50, 40)):
        user = UserFactory()
        for c in range(connections):
            conn = Connection.objects.create(owner=user, name=f"c{c}", base_url="http://127.0.0.1:9/v1")
            ConnectionModel.objects.bulk_create(ConnectionModel(connection=conn, name=f"m{m}") for m in range(models))
        session = SessionFactory(owner=user)
        build_chain(session, 30)
        client = Client()
        client.force_login(user)
        url = f"/s/{session.pk}/"
        assert client.get(url).status_code == 200
        with CaptureQueriesContext(db) as queries:
            html = client.get(url).content.decode()
        count = len(queries)  # now: later requests close the connection and its query log
        assert html.count('value="model:') == connections * models
        times = timed(lambda cl=client, u=url: cl.get(u), repeat=10, warmup=1)
        rows.append([connections, connections * models, count, ms(percentile(times, 50))])
    bench.table("Chat page with the composer's picker (30 turns)", ["connections", "models listed", "queries",
                                                                    "p50 ms"], rows)


def run(bench: Bench) -> None:
    user = UserFactory()
    bench_endpoint_resolution(bench, user)
    bench_probe(bench, user)
    bench_chat_page(bench)
