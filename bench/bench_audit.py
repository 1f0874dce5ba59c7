"""Audit at scale: the admin's sessions list over 2,000 sessions (20,000 runs), a run's audit page
with 100 nested steps, the audit log's write cost and its export of 50,000 rows.

Pages are rendered in-process through Django's test client (middleware, admin, templates; no
network) as a superuser, each ``REPEAT`` times after warm-up.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.db import connection
from django.test import Client
from django.utils import timezone

from bench.harness import ms, percentile, timed

REPEAT = 15
SESSIONS = 2000
RUNS_PER_SESSION = 10
STEPS = 100
LOG_ROWS = 50_000


def _build():
    from audit.models import AuditLog
    from conversations.models import Run, RunStatus, Session, Step, StepKind
    from tests.support.factories import UserFactory, build_chain

    admin = UserFactory(is_staff=True, is_superuser=True)
    owners = [UserFactory() for _ in range(20)]
    sessions = Session.objects.bulk_create([
        Session(owner=owners[i % len(owners)], title=f"Session about topic {i}") for i in range(SESSIONS)
    ])
    for i, session in enumerate(sessions):
        runs = build_chain(session, RUNS_PER_SESSION)
        if i % 10 == 0:
            Run.objects.filter(pk=runs[-1].pk).update(status=RunStatus.FAILED, prompt_tokens=100, completion_tokens=20)
    run = Run.objects.filter(session=sessions[0]).order_by("-depth").first()
    t0 = timezone.now()
    parent = None
    steps = []
    for i in range(STEPS):
        kind = [StepKind.CONTEXT, StepKind.LLM_CALL, StepKind.TOOL_CALL, StepKind.AGENT_CALL][i % 4]
        step = Step.objects.create(run=run, parent_step=parent if kind == StepKind.TOOL_CALL else None, kind=kind,
                                   name=f"step {i}", status=RunStatus.SUCCEEDED,
                                   started_at=t0 + timedelta(milliseconds=10 * i),
                                   finished_at=t0 + timedelta(milliseconds=10 * i + 5),
                                   request={"model": "fake-model", "api_key": "sk-x", "context": None})
        if kind == StepKind.LLM_CALL:
            parent = step
        steps.append(step)
    now = timezone.now()
    AuditLog.objects.bulk_create([
        AuditLog(actor=owners[i % len(owners)], actor_username=owners[i % len(owners)].username,
                 action=["session.create", "run.start", "run.cancel", "auth.login"][i % 4],
                 target_type="conversations.run", target_id=str(i), ip="192.0.2.1", user_agent="bench",
                 method="POST", path="/s/x/runs", details={"n": i}, created_at=now)
        for i in range(LOG_ROWS)
    ], batch_size=2000)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    return admin, run


def _page(client: Client, url: str) -> list:
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    times = timed(lambda: client.get(url), repeat=REPEAT, warmup=2)
    return [ms(percentile(times, 50)), ms(percentile(times, 95)), f"{len(response.content):,}", len(queries)]


def run(bench) -> None:
    from django.urls import reverse

    from audit.log import record
    from audit.models import AuditLog

    start = time.perf_counter()
    admin, run_ = _build()
    built = time.perf_counter() - start
    client = Client()
    client.force_login(admin)
    changelist = reverse("admin:conversations_session_changelist")
    rows = [
        [
            f"sessions list ({SESSIONS:,} sessions, {SESSIONS * RUNS_PER_SESSION:,} runs), page 1",
            *_page(client, changelist),
        ],
        ["  sorted by tokens", *_page(client, changelist + "?o=5")],
        ["  filtered: has a failed run", *_page(client, changelist + "?run_status=failed")],
        ["  search: message text 'question 7'", *_page(client, changelist + "?q=%22question+7%22")],
        ["runs list", *_page(client, reverse("admin:conversations_run_changelist"))],
        [f"run audit page ({STEPS} steps, nested)", *_page(client, reverse("audit:run", args=[run_.pk]))],
        [f"audit log list ({LOG_ROWS:,} rows)", *_page(client, reverse("admin:audit_auditlog_changelist"))],
    ]
    bench.table(f"Admin and audit pages on {connection.vendor} (data built in {built:.1f} s)",
                ["page", "p50 ms", "p95 ms", "bytes", "queries"], rows)

    writes = timed(lambda: record("bench.write", target_type="bench", target_id="1", details={"k": "v"}),
                   repeat=200, warmup=5)
    export_rows = []
    for fmt in ("csv", "jsonl"):
        t = time.perf_counter()
        response = client.get(reverse("audit:log_export"), {"format": fmt})
        size = sum(len(chunk) for chunk in response.streaming_content)
        seconds = time.perf_counter() - t
        count = AuditLog.objects.count()
        export_rows.append([f"export {fmt} ({count:,} rows)", f"{seconds:.2f} s", f"{count / seconds:,.0f} rows/s",
                            f"{size / 1e6:.1f} MB"])
    bench.table("Audit log: writing one row, exporting everything",
                ["operation", "time", "throughput", "size"],
                [["record() one row (p50 / p95)", f"{ms(percentile(writes, 50))} / {ms(percentile(writes, 95))} ms",
                  f"{1 / percentile(writes, 50):,.0f} rows/s", ""], *export_rows])
