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
    run_branch_diff(bench)  # its own session, independent of the 10,000-run tree below
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


# --- the branch diff (issue 13) -------------------------------------------------------------------

DIFF_TURNS = 500  # turns of each branch below the common turn
DIFF_SHARED = 20  # turns both branches share


def _answer(i: int, variant: str) -> str:
    """An answer of about 80 words; branch B changes a few words of every third one."""
    words = [f"word{(i * 7 + k) % 97}" for k in range(80)]
    if variant == "b" and i % 3 == 0:
        words[10], words[40], words[70] = "changed", "differently", "here"
    return f"The answer to turn {i}: {' '.join(words)}."


def _diff_branch(session, parent, variant: str) -> list:
    """DIFF_TURNS finished runs in a line under ``parent``, with usage and timings (bulk inserts);
    B rewrites the input of every 25th turn (aligned as a pair) and of every 100th from the 50th."""
    import uuid  # imported here like _build's: the module is loaded before Django is set up
    from datetime import timedelta

    from django.utils import timezone

    from conversations.models import Message, Role, Run, RunStatus

    now = timezone.now()
    runs, messages = [], []
    for i in range(DIFF_TURNS):
        text_in = f"Question {i} about the plan"
        if variant == "b" and i % 25 == 0:
            text_in = f"Question {i} about the other plan"
        if variant == "b" and i % 100 == 50:
            text_in = f"An extra question at {i}"
        run = Run(id=uuid.uuid4(), session=session, parent_run=runs[-1] if runs else parent,
                  depth=parent.depth + 1 + i, status=RunStatus.SUCCEEDED, model="fake-model",
                  prompt_tokens=100 + i, completion_tokens=80, created_at=now, started_at=now,
                  first_token_at=now + timedelta(milliseconds=50), finished_at=now + timedelta(milliseconds=400))
        runs.append(run)
        messages.append(Message(run=run, position=0, role=Role.USER, content=text_in))
        messages.append(Message(run=run, position=1, role=Role.ASSISTANT, content=_answer(i, variant)))
    Run.objects.bulk_create(runs, batch_size=500)
    Message.objects.bulk_create(messages, batch_size=1000)
    return runs


def run_branch_diff(bench) -> None:
    """``bench ui``: the branch diff of two 500-turn branches below 20 shared turns (page and API)."""
    from conversations import branches  # after Django is set up, as in _build
    from tests.factories import SessionFactory, UserFactory, build_chain

    user = UserFactory()
    session = SessionFactory(owner=user, title="Bench: branch diff")
    shared = build_chain(session, DIFF_SHARED)
    a = _diff_branch(session, shared[-1], "a")[-1]
    b = _diff_branch(session, shared[-1], "b")[-1]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    result = branches.branch_diff(a, b)
    kinds = {kind: sum(r.kind == kind for r in result["rows"]) for kind in ("same", "changed", "only_a", "only_b")}
    client = Client()
    client.force_login(user)
    rows = [
        ["diff page (HTML, side by side)", f"/s/{session.pk}/diff/?a={a.pk}&b={b.pk}"],
        ["API GET /api/runs/{a}/diff/{b} (JSON)", f"/api/runs/{a.pk}/diff/{b.pk}"],
    ]
    queries = []
    with connection.execute_wrapper(lambda execute, sql, params, many, ctx: queries.append(sql)
                                    or execute(sql, params, many, ctx)):
        branches.branch_diff(a, b)
    pure = timed(lambda: branches.branch_diff(a, b), repeat=REPEAT, warmup=2)
    table = [[label, *_measure(client, url)] for label, url in rows]
    table.append(["branches.branch_diff (reads + difflib, no rendering)", ms(percentile(pure, 50)),
                  ms(percentile(pure, 95)), "–", len(queries)])
    bench.table(
        f"Branch diff: two branches of {DIFF_TURNS} turns below {DIFF_SHARED} shared ones, ~80-word answers "
        f"({len(result['rows'])} aligned rows: {kinds}; {connection.vendor}; {REPEAT} requests each)",
        ["what", "p50 ms", "p95 ms", "bytes", "queries"],
        table,
    )
