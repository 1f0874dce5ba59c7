"""The dashboard at scale: a session of 10,000 runs whose active branch is 1,000 runs deep.

Pages are rendered in-process through Django's test client (middleware, views, templates; no
network), each ``REPEAT`` times after warm-up. Targets (issue 3): the chat page and the tree view
each ≤ 300 ms p50 on PostgreSQL, HTML < 2 MB.

The tree: a main line of 1,000 runs (the active branch); every 5th run of it has a side branch of
45 runs (200 side branches, 9,000 runs); every side branch has a regenerated sibling at its 20th
run. Total 10,000 + 200 = 10,200 runs.

The tree map (issue 13; targets: server ≤ 300 ms p50, Chromium render ≤ 1 s, zoom response
≤ 100 ms) on that tree and on a bushy one (10,000 runs, each hung under one of the 40 newest runs
before it: thousands of branch points, so the map folds past its node budget). Server time and
SVG bytes come from the test client; render and zoom times from Debian's Chromium (Playwright)
against Arbor under uvicorn: *render* is from the end of the HTML response to the first frame
painted after treemap.js has set the map up (performance marks), *zoom* from a ``+``/``−`` key
event on the map to the next frame painted (a requestAnimationFrame callback, then a task).
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import time
import uuid
from pathlib import Path

from django.db import connection
from django.test import Client
from django.utils import timezone

from bench.harness import ms, percentile, timed

REPEAT = 20
MAIN_DEPTH = 1000
SIDE_EVERY = 5
SIDE_LENGTH = 45


def _build():
    from conversations.models import Run, Session
    from tests.support.factories import RunFactory, SessionFactory, UserFactory, build_chain

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


def _measure(client: Client, url: str, headers: dict | None = None, method: str = "get") -> list:
    headers = headers or {}
    send = getattr(client, method)
    queries = []
    with connection.execute_wrapper(
        lambda execute, sql, params, many, ctx: queries.append(sql) or execute(sql, params, many, ctx),
    ):
        response = send(url, headers=headers)
    assert response.status_code == 200, (url, response.status_code, response.content[:500])
    size = len(response.content)
    times = timed(lambda: send(url, headers=headers), repeat=REPEAT, warmup=2)
    return [ms(percentile(times, 50)), ms(percentile(times, 95)), f"{size:,}", len(queries)]


def _build_bushy(user, runs: int = 10_000, window: int = 40, seed: int = 13):
    """A session of ``runs`` runs, each the child of one of the ``window`` newest runs before it
    (bulk inserts); the active run is the deepest leaf."""
    from conversations.models import Message, Role, Run, RunStatus, Session
    from tests.support.factories import SessionFactory

    rng = random.Random(seed)
    session = SessionFactory(owner=user, title="Bench: 10,000 runs, bushy")
    now = timezone.now()
    made: list = []
    messages = []
    for i in range(runs):
        parent = made[max(0, i - 1 - rng.randrange(window))] if made else None
        run = Run(id=uuid.uuid4(), session=session, parent_run=parent, depth=parent.depth + 1 if parent else 0,
                  status=RunStatus.SUCCEEDED, model="fake-model", created_at=now, finished_at=now)
        made.append(run)
        messages.append(Message(run=run, position=0, role=Role.USER, content=f"bushy question {i}"))
        messages.append(Message(run=run, position=1, role=Role.ASSISTANT, content=f"bushy answer {i}"))
    Run.objects.bulk_create(made, batch_size=500)
    Message.objects.bulk_create(messages, batch_size=1000)
    deepest = max(made, key=lambda r: r.depth)
    Session.objects.filter(pk=session.pk).update(active_run=deepest)
    return session, deepest.depth + 1


def _map_facts(client: Client, base: str) -> tuple[int, int, int]:
    """(SVG bytes, runs, nodes drawn) of a tree page's map."""
    html = client.get(f"{base}/tree/").content.decode()
    svg = re.search(r"<svg class=\"treemap-svg\".*?</svg>", html, re.S).group(0)
    drawn = re.search(r'data-runs="(\d+)" data-drawn="(\d+)"', html)
    return len(svg.encode()), int(drawn.group(1)), int(drawn.group(2))


_ZOOM_JS = """async () => {
  const vp = document.querySelector('.treemap-viewport');
  const times = [];
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    vp.dispatchEvent(new KeyboardEvent('keydown', {key: i % 2 ? '-' : '+', bubbles: true}));
    await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
    times.push(performance.now() - t0);
  }
  return times;
}"""

_RENDER_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const painted = performance.getEntriesByName('treemap-painted')[0];
  return painted ? painted.startTime - nav.responseEnd : null;
}"""


def _browser_times(base_url: str, username: str, urls: list[str], loads: int = 7) -> list[tuple[list, list, list]]:
    """For each page URL: (render ms of ``loads`` loads, zoom ms with the shown run centred, zoom ms
    with the whole tree in view)."""
    from tests.support.processes import launch_chromium

    out = []
    with launch_chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{base_url}/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", "pw-123456")
        page.click("form button[type=submit]")
        page.wait_for_url(f"{base_url}/")
        for url in urls:
            renders = []
            for _ in range(loads):
                page.goto(base_url + url)
                page.wait_for_function("() => performance.getEntriesByName('treemap-painted').length > 0")
                renders.append(page.evaluate(_RENDER_JS))
            page.locator(".treemap-viewport").focus()
            near = page.evaluate(_ZOOM_JS)
            page.keyboard.press("0")  # the whole tree in view: every node drawn in the frame
            whole = page.evaluate(_ZOOM_JS)
            out.append((renders, near, whole))
    return out


def bench_tree_map(bench, user, sessions: list) -> None:
    """Rows for the tree map: ``sessions`` are (label, session)."""
    from tests.support.processes import start_web

    class _Server:  # what child_env needs of the model server
        base_url = bench.llm_base_url

    client = Client()
    client.force_login(user)
    rows = []
    for label, session in sessions:
        base = f"/s/{session.pk}"
        page = _measure(client, f"{base}/tree/")
        fragment = _measure(client, f"{base}/tree/map", {"HX-Request": "true"})
        svg_bytes, runs, drawn = _map_facts(client, base)
        rows.append([label, f"{runs:,}", f"{drawn:,}", page[0], fragment[0], fragment[3], f"{svg_bytes:,}"])
    web, base_url = start_web(_Server, Path(tempfile.mkdtemp(prefix="arbor-bench-ui-")))
    try:
        times = _browser_times(base_url, user.get_username(), [f"/s/{s.pk}/tree/" for _, s in sessions])
    finally:
        web.stop()
    for row, (renders, near, whole) in zip(rows, times, strict=True):
        row += [f"{percentile(renders, 50):.0f}", f"{percentile(near, 50):.1f}", f"{percentile(near, 95):.1f}",
                f"{percentile(whole, 50):.1f}", f"{percentile(whole, 95):.1f}"]
    bench.table(
        f"Tree map ({connection.vendor}; server: {REPEAT} requests each; Chromium: 7 loads, 30 zoom steps each; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})",
        ["tree", "runs", "nodes drawn", "page p50 ms", "map alone p50 ms", "map queries", "SVG bytes",
         "render p50 ms", "zoom p50 ms (at the shown run)", "p95", "zoom p50 ms (whole tree)", "p95"],
        rows,
    )


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
            # opening (a POST) writes the active run; measure it, then put the main branch back
            table.append([label, *_measure(client, url, headers, method="post")])
            client.post(f"{base}/runs/{main[-1].pk}/open")
            continue
        table.append([label, *_measure(client, url, headers)])
    bench.table(
        f"Dashboard pages, {run_count:,} runs in the session, active branch {MAIN_DEPTH:,} deep "
        f"({connection.vendor}; built in {build_seconds:.1f} s; {REPEAT} requests each)",
        ["page", "p50 ms", "p95 ms", "HTML bytes", "queries"],
        table,
    )
    bushy, bushy_depth = _build_bushy(user)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    bench_tree_map(bench, user, [
        (f"{run_count:,} runs, active branch {MAIN_DEPTH:,} deep", session),
        (f"10,000 runs, bushy, active branch {bushy_depth:,} deep", bushy),
    ])


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
    from branches import selectors as branch_reads  # after Django is set up, as in _build
    from tests.support.factories import SessionFactory, UserFactory, build_chain

    user = UserFactory()
    session = SessionFactory(owner=user, title="Bench: branch diff")
    shared = build_chain(session, DIFF_SHARED)
    a = _diff_branch(session, shared[-1], "a")[-1]
    b = _diff_branch(session, shared[-1], "b")[-1]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    result = branch_reads.branch_diff(a, b)
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
        branch_reads.branch_diff(a, b)
    pure = timed(lambda: branch_reads.branch_diff(a, b), repeat=REPEAT, warmup=2)
    table = [[label, *_measure(client, url)] for label, url in rows]
    table.append(["branch_reads.branch_diff (reads + difflib, no rendering)", ms(percentile(pure, 50)),
                  ms(percentile(pure, 95)), "–", len(queries)])
    bench.table(
        f"Branch diff: two branches of {DIFF_TURNS} turns below {DIFF_SHARED} shared ones, ~80-word answers "
        f"({len(result['rows'])} aligned rows: {kinds}; {connection.vendor}; {REPEAT} requests each)",
        ["what", "p50 ms", "p95 ms", "bytes", "queries"],
        table,
    )
