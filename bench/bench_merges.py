"""Fan-out, fuse and merge.

* fan-out of 4: ``merges.services.fan_out`` with 4 variants, run by a real Celery worker (threads
  pool, as ``make run``) against the scripted model server with a fast model (20 tokens, 10 ms
  apart): how far apart the 4 first tokens are (spread), and the time from the send to the last
  variant finished (all done); 5 fan-outs.
* merge: a merge of a 200-turn branch back into its main line, as a digest drafted by a run
  (``digest_draft_start``, executed by the worker: from the start to the run finished), previewed
  (``merge_plan``: two path reads, the branch's messages) and written (``merge_create``), and as 20
  chosen turns verbatim: time and the tokens carried.

Each table is printed with the load average (the machine is shared).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from django.conf import settings

from bench.harness import Bench, ms, percentile
from conversations.models import Run, Session
from merges import services
from tests.support.factories import SessionFactory, UserFactory, build_chain
from tests.support.processes import start_worker

FAN_OUTS = 5


class _Server:  # what start_worker needs of the model server
    base_url = ""


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def bench_fan_out(bench: Bench, user) -> None:
    spreads, all_done = [], []
    for attempt in range(FAN_OUTS):
        session = SessionFactory(owner=user)
        build_chain(session, 3)
        started = time.perf_counter()
        group = services.fan_out(session=session, input=f"[[tokens:20]] [[delay:0.01]] {attempt}",
                                 variants=[services.Variant(model=f"model-{i}") for i in range(4)])
        ids = [run.pk for run in group.started]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and Run.objects.filter(pk__in=ids, finished_at__isnull=True).exists():
            time.sleep(0.02)
        all_done.append(time.perf_counter() - started)
        firsts = sorted(Run.objects.filter(pk__in=ids).values_list("first_token_at", flat=True))
        spreads.append((firsts[-1] - firsts[0]).total_seconds())
    bench.table(f"Fan-out of 4 variants on one worker, a fast model (20 tokens, 10 ms apart; {FAN_OUTS} fan-outs; "
                f"{_load()})",
                ["fan-outs", "first-token spread p50 ms", "spread max ms", "all done p50 ms", "all done max ms"],
                [[FAN_OUTS, ms(percentile(spreads, 50)), ms(max(spreads)), ms(percentile(all_done, 50)),
                  ms(max(all_done))]])


def _wait_finished(run_id, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Run.objects.filter(pk=run_id, finished_at__isnull=True).exists():
        time.sleep(0.02)


def bench_merge(bench: Bench, user) -> None:
    session = SessionFactory(owner=user)
    main = build_chain(session, 5)
    branch = build_chain(session, 200, parent=main[1])
    Session.objects.filter(pk=session.pk).update(active_run=main[-1])
    rows = []
    started = time.perf_counter()
    draft = services.digest_draft_start(session=session, target=main[-1], source=branch[-1])
    _wait_finished(draft.run_id)
    drafted = time.perf_counter() - started
    draft.run.refresh_from_db()
    started = time.perf_counter()
    plan = services.merge_plan(session=session, target=main[-1], source=branch[-1], mode="digest",
                               digest=services.digest_draft_text(draft))
    planned = time.perf_counter() - started
    started = time.perf_counter()
    services.merge_create(session=session, plan=plan)
    written = time.perf_counter() - started
    rows.append([f"digest (drafted by a run: {draft.run.prompt_tokens} prompt tokens)", len(plan.carried),
                 plan.tokens, ms(drafted), ms(planned), ms(written)])
    started = time.perf_counter()
    chosen = [run.pk for run in branch[::10]]
    plan = services.merge_plan(session=session, target=main[-1], source=branch[-1], mode="turns", run_ids=chosen)
    planned = time.perf_counter() - started
    started = time.perf_counter()
    services.merge_create(session=session, plan=plan)
    rows.append(["20 chosen turns verbatim", len(plan.carried), plan.tokens, "", ms(planned),
                 ms(time.perf_counter() - started)])
    bench.table(f"Merging a 200-turn branch back ({_load()})",
                ["mode", "turns covered", "tokens carried", "draft ms (start to the run finished, in the worker)",
                 "preview ms", "write ms"], rows)


def run(bench: Bench) -> None:
    _Server.base_url = bench.llm_base_url
    user = UserFactory()
    log_dir = Path(tempfile.mkdtemp(prefix="arbor-bench-merges-"))
    worker = start_worker(_Server, log_dir, name="bench-merges", concurrency=settings.ARBOR_RUN_CONCURRENCY)
    try:
        bench_merge(bench, user)
        bench_fan_out(bench, user)
    finally:
        worker.stop()
