"""The dashboard at scale: a session of 10,000 runs whose active branch is 1,000 runs deep.

Pages are rendered in-process through Django's test client (middleware, views, templates; no
network), each ``REPEAT`` times after warm-up. Targets (issue 3): the chat page and the tree view
each ≤ 300 ms p50 on PostgreSQL, HTML < 2 MB.

The tree: a main line of 1,000 runs (the active branch); every 5th run of it has a side branch of
45 runs (200 side branches, 9,000 runs); every side branch has a regenerated sibling at its 20th
run. Total 10,000 + 200 = 10,200 runs.
"""

from __future__ import annotations

import time

from django.db import connection
from django.test import Client

from bench.harness import ms, percentile, timed

REPEAT = 20
MAIN_DEPTH = 1000
SIDE_EVERY = 5
SIDE_LENGTH = 45


def _build():
    from conversations.models import Run, Session
    from tests.factories import RunFactory, SessionFactory, UserFactory, build_chain

    user = UserFactory()
    session = SessionFactory(owner=user, title="Bench: 10,000 runs")
    main = build_chain(session, MAIN_DEPTH)
    for i in range(0, MAIN_DEPTH - 1, SIDE_EVERY):
        side = build_chain(session, SIDE_LENGTH, parent=main[i])
        RunFactory(session=session, parent_run=side[19].parent_run, turn=("a regenerated question", "another answer"))
    Session.objects.filter(pk=session.pk).update(active_run=main[-1])
    session.refresh_from_db()
    # Other sessions for the list and its search.
    for n in range(200):
        other = SessionFactory(owner=user, title=f"Session about topic {n}")
        build_chain(other, 5)
    RunFactory(
        session=SessionFactory(owner=user, title="Penguins"), turn=("How do emperor penguins keep warm?", "Huddling."),
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    return user, session, main, Run.objects.filter(session=session).count()


def _measure(client: Client, url: str, headers: dict | None = None) -> list:
    headers = headers or {}
    queries = []
    with connection.execute_wrapper(
        lambda execute, sql, params, many, ctx: queries.append(sql) or execute(sql, params, many, ctx),
    ):
        response = client.get(url, headers=headers)
    assert response.status_code == 200, (url, response.status_code, response.content[:500])
    size = len(response.content)
    times = timed(lambda: client.get(url, headers=headers), repeat=REPEAT, warmup=2)
    return [ms(percentile(times, 50)), ms(percentile(times, 95)), f"{size:,}", len(queries)]


def run(bench) -> None:
    started = time.perf_counter()
    user, session, main, run_count = _build()
    build_seconds = time.perf_counter() - started
    client = Client()
    client.force_login(user)
    base = f"/s/{session.pk}"
    side_root = main[500].children.exclude(pk=main[501].pk).first()
    htmx = {"HX-Request": "true"}
    rows = [
        ["chat page (newest 30 turns of 1,000)", f"{base}/"],
        ["chat: older turns (htmx, deep in the branch)", f"{base}/older?before={main[100].pk}"],
        ["chat: open a sibling branch (htmx)", f"{base}/runs/{side_root.pk}/open"],
        ["tree view (whole session)", f"{base}/tree/"],
        ["tree: lazy subtree (htmx)", f"{base}/tree/?root={side_root.pk}"],
        ["tree: elided line of 200 runs (htmx)", f"{base}/tree/?chain={main[300].pk}&n=200"],
        ["sessions list (202 sessions)", "/"],
        ["sessions search (title + message text)", "/?q=penguins"],
    ]
    table = []
    for label, url in rows:
        headers = htmx if "(htmx" in label else None
        if "open a sibling" in label:
            # opening writes the active run; measure it, then put the main branch back
            table.append([label, *_measure(client, url, headers)])
            client.get(f"{base}/runs/{main[-1].pk}/open")
            continue
        table.append([label, *_measure(client, url, headers)])
    bench.table(
        f"Dashboard pages, {run_count:,} runs in the session, active branch {MAIN_DEPTH:,} deep "
        f"({connection.vendor}; built in {build_seconds:.1f} s; {REPEAT} requests each)",
        ["page", "p50 ms", "p95 ms", "HTML bytes", "queries"],
        table,
    )
