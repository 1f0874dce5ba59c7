"""Comparisons: starting one, the side-by-side page, and the results over many votes.

* start: ``comparison_start`` with 2 and 4 variants (rows written, time; enqueueing is on commit
  and not part of the figure).
* page: the side-by-side page of a 4-variant, 10-turn replay with every turn voted (queries, time).
* results: ``compute_results`` (win rates, Wilson intervals, Bradley–Terry fit over 8
  configurations) for 100 / 1,000 / 5,000 votes.
* judge: throughput of an LLM judge on a real Celery worker against the scripted model server (a
  fast model: about 10 tokens per reply), every pair in both orders, in pairs per minute.
* results page: the whole page (people's ratings plus the evaluation: agreement, ratings by source,
  raw and style-controlled Bradley–Terry with 200-round bootstraps, votes needed) with 10,000 votes,
  first load (the evaluation block computed) and reload (read from the cache).

Each table is printed with the load average (the machine is shared).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_htmx.middleware import HtmxDetails

from bench.harness import ms, percentile, timed
from comparisons import advance, insights, judging, selectors, services, views
from comparisons.models import Comparison, Judgement, Variant, VariantRun, Vote, VoteRank, config_fingerprint
from comparisons.services import VariantSpec
from conversations.models import Message, Role, Run, RunStatus, Session
from memory.models import Agent
from tests.support.factories import build_chain
from tests.support.processes import start_worker

JUDGE_PAIRS = 40
JUDGE_SCRIPT = "Judge fairly. [[reply:Answer 1 is clearer and more complete than answer 2. Verdict: 1]]"


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


class _Server:  # what start_worker needs of the model server
    base_url = ""


def _rows() -> int:
    return sum(m.objects.count() for m in (Comparison, Variant, VariantRun, Run, Message))


def _bench_start(bench, user, session, parent) -> None:
    rows = []
    for n in (2, 4):
        specs = lambda: [VariantSpec(label=f"v{i}", model=f"m{i}", params={"temperature": 0.1 * i}) for i in range(n)]  # noqa: E731
        services.comparison_start(owner=user, session=session, branch_point=parent, variants=specs(), prompt="warm")
        before = _rows()
        with CaptureQueriesContext(connection) as queries:
            services.comparison_start(owner=user, session=session, branch_point=parent, variants=specs(), prompt="x")
        written = _rows() - before
        times = timed(lambda: services.comparison_start(owner=user, session=session, branch_point=parent,
                                                        variants=specs(), prompt="y"), repeat=10, warmup=1)
        rows.append([n, written, len(queries), ms(percentile(times, 50)), ms(percentile(times, 95))])
    bench.table("Starting a comparison (comparison_start, new prompt)",
                ["variants", "rows written", "queries", "p50 ms", "p95 ms"], rows)


def _bench_page(bench, user, session, runs) -> None:
    specs = [VariantSpec(label=f"page{i}", model=f"pm{i}") for i in range(4)]
    comparison = services.comparison_start(owner=user, session=session, branch_point=runs[-11], variants=specs,
                                           mode="replay", source_run=runs[-1], blind=True)
    now = timezone.now()
    for turn in range(10):
        for vr in VariantRun.objects.filter(variant__comparison=comparison, turn=turn):
            Run.objects.filter(pk=vr.run_id).update(status=RunStatus.SUCCEEDED, started_at=now, first_token_at=now,
                                                    finished_at=now, prompt_tokens=100, completion_tokens=50)
            Message.objects.create(run_id=vr.run_id, position=1, role=Role.ASSISTANT, content="answer " * 50)
            advance.variant_advance(variant_id=vr.variant_id, finished_run_id=vr.run_id)
        services.vote_cast(comparison=comparison, turn=turn, choice="ranking", ranking={0: 1, 1: 2, 2: 2, 3: 4})
    def get():
        request = RequestFactory().get(f"/compare/{comparison.pk}/")
        request.user = user
        request.htmx = HtmxDetails(request)
        response = views.detail(request, comparison.pk)
        assert response.status_code == 200
        return response

    with CaptureQueriesContext(connection) as queries:
        get()
    times = timed(get, repeat=20)
    bench.table("Side-by-side page (4 variants × 10 replayed turns, all voted)",
                ["cells", "queries", "p50 ms", "p95 ms"],
                [[40, len(queries), ms(percentile(times, 50)), ms(percentile(times, 95))]])


def _seed_votes(user, session, parent, count: int, rng: random.Random) -> list:
    """``count`` two-variant comparisons among 8 configurations, each with one vote (bulk insert)."""
    configs = [{"model": f"cfg-{i}", "system_prompt": "", "params": {}, "memory_id": "default",
                "memory_window_size": None} for i in range(8)]
    strength = [i * 0.3 for i in range(8)]
    comparisons, variants, runs, votes, ranks = [], [], [], [], []
    now = timezone.now()
    for _ in range(count):
        c = Comparison(id=uuid.uuid4(), owner=user, session=session, branch_point=parent, prompts=["p"],
                       column_order=[0, 1])
        comparisons.append(c)
        a, b = rng.sample(range(8), 2)
        pair = []
        for position, cfg in enumerate((a, b)):
            v = Variant(comparison=c, position=position, label=f"config {cfg}", config=configs[cfg],
                        config_key=config_fingerprint(configs[cfg]))
            r = Run(id=uuid.uuid4(), session=session, parent_run=parent, depth=parent.depth + 1,
                    status=RunStatus.SUCCEEDED, model=f"cfg-{cfg}", created_at=now, finished_at=now)
            variants.append(v)
            runs.append(r)
            pair.append((v, r, cfg))
        vote = Vote(comparison=c, turn=0, choice="a_better")
        votes.append((vote, pair))
    with transaction.atomic():
        Comparison.objects.bulk_create(comparisons, batch_size=500)
        Variant.objects.bulk_create(variants, batch_size=500)
        Run.objects.bulk_create(runs, batch_size=500)
        Vote.objects.bulk_create([v for v, _ in votes], batch_size=500)
        for vote, pair in votes:
            (va, ra, ca), (vb, rb, cb) = pair
            p_a = 1 / (1 + pow(2.718281828, strength[cb] - strength[ca]))
            a_wins = rng.random() < p_a
            ranks.append(VoteRank(vote=vote, variant=va, run=ra, rank=1 if a_wins else 2))
            ranks.append(VoteRank(vote=vote, variant=vb, run=rb, rank=2 if a_wins else 1))
        VoteRank.objects.bulk_create(ranks, batch_size=1000)
        VariantRun.objects.bulk_create([VariantRun(variant=v, turn=0, run=r) for _, pair in votes for v, r, _ in pair],
                                       batch_size=1000)
    return comparisons


def _bench_results(bench, user, parent_session, parent) -> None:
    rows = []
    rng = random.Random(7)
    User = get_user_model()
    for count in (100, 1000, 5000):
        owner = User.objects.create(username=f"bench-results-{count}")
        session = Session.objects.create(owner=owner, title="results")
        root = build_chain(session, 1)[0]
        _seed_votes(owner, session, root, count, rng)
        qs = Comparison.objects.owned_by(owner)
        with CaptureQueriesContext(connection) as queries:
            data = selectors.compute_results(qs)
        assert data["votes"] == count
        times = timed(lambda: selectors.compute_results(qs), repeat=5, warmup=1)
        best = data["results"][0]
        rows.append([count, len(data["results"]), len(queries), ms(percentile(times, 50)),
                     f"{best.label} {best.rating:.0f}"])
    bench.table("Results over all votes (8 configurations: win rates, Wilson CIs, Bradley–Terry)",
                ["votes", "configurations", "queries", "p50 ms", "top rating"], rows)


def _answered_comparison(user, session, parent, prompts: int) -> Comparison:
    """A 2-variant comparison of ``prompts`` turns, every answer written as a worker would."""
    source = build_chain(session, prompts, parent=parent)
    comparison = services.comparison_start(owner=user, session=session, branch_point=parent, mode="replay",
                                           source_run=source[-1], variants=[VariantSpec(label="j0", model="jm0"),
                                                                            VariantSpec(label="j1", model="jm1")])
    now = timezone.now()
    for turn in range(prompts):
        for vr in VariantRun.objects.filter(variant__comparison=comparison, turn=turn):
            Run.objects.filter(pk=vr.run_id).update(status=RunStatus.SUCCEEDED, started_at=now, finished_at=now)
            Message.objects.create(run_id=vr.run_id, position=1, role=Role.ASSISTANT,
                                   content=f"answer {turn} " + "word " * (20 + 30 * vr.variant.position))
            advance.variant_advance(variant_id=vr.variant_id, finished_run_id=vr.run_id)
    return comparison


def _bench_judge(bench, user, session, parent) -> None:
    comparison = _answered_comparison(user, session, parent, JUDGE_PAIRS)
    agent = Agent.objects.create(owner=user, name="bench judge", model="fast-judge")
    _Server.base_url = bench.llm_base_url
    worker = start_worker(_Server, Path(tempfile.mkdtemp(prefix="arbor-bench-judge-")), name="bench-judge",
                          concurrency=settings.ARBOR_RUN_CONCURRENCY)
    try:
        load_before = _load()
        started = time.perf_counter()
        found = judging.judging_start(comparison=comparison, agent=agent, rubric_name="bench", rubric_text=JUDGE_SCRIPT)
        deadline = time.time() + 600
        while Judgement.objects.filter(judging=found, recorded_at__isnull=True).exists() and time.time() < deadline:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        worker.stop()
    state = insights.judging_state(found)
    bench.table(f"LLM judge on a Celery worker ({settings.ARBOR_RUN_CONCURRENCY} run threads), scripted fast model, "
                f"both orders; {load_before} before, {_load()} after",
                ["pairs", "judge calls", "recorded", "seconds", "pairs / minute", "calls / second", "flips caught"],
                [[JUDGE_PAIRS, state["total"], state["done"], f"{elapsed:.1f}", f"{60 * JUDGE_PAIRS / elapsed:.0f}",
                  f"{state['total'] / elapsed:.1f}", state["flips"]]])


def _bench_results_page(bench) -> None:
    owner = get_user_model().objects.create(username="bench-results-page")
    session = Session.objects.create(owner=owner, title="results page")
    root = build_chain(session, 1)[0]
    _seed_votes(owner, session, root, 10_000, random.Random(11))
    rng = random.Random(5)
    def answer() -> str:
        return "# Answer\n" * rng.randint(0, 1) + "- point\n" * rng.randint(0, 4) + "word " * rng.randint(5, 200)

    Message.objects.bulk_create([
        Message(run_id=run_id, position=1, role=Role.ASSISTANT, content=answer())
        for run_id in Run.objects.filter(session=session, depth=1).values_list("pk", flat=True)], batch_size=2000)

    def get():
        request = RequestFactory().get("/compare/results/")
        request.user = owner
        request.htmx = HtmxDetails(request)
        response = views.results(request)
        assert response.status_code == 200 and b"Style-controlled" in response.content
        return response

    qs = Comparison.objects.owned_by(owner)
    key = insights._evaluation_cache_key(qs, "configuration", insights.ev.BOOTSTRAP_ROUNDS)

    def first_load():
        cache.delete(key)  # only this page's entry: the cache is shared
        return get()

    load_before = _load()
    with CaptureQueriesContext(connection) as first_queries:
        first_load()
    with CaptureQueriesContext(connection) as reload_queries:
        get()
    first = timed(first_load, repeat=3, warmup=0)
    reload = timed(get, repeat=3, warmup=0)
    people = timed(lambda: selectors.compute_results(qs), repeat=3, warmup=0)
    evaluation = timed(lambda: insights.evaluation(qs), repeat=3, warmup=0)
    bench.table(f"Results page with 10,000 votes (8 configurations, 20,000 answers); the evaluation block is "
                f"cached by the comparisons' vote and judgement counts; {load_before} before, {_load()} after",
                ["votes", "queries first / reload", "first load p50 ms", "reload p50 ms", "people's ratings p50 ms",
                 "evaluation (uncached) p50 ms"],
                [[10_000, f"{len(first_queries)} / {len(reload_queries)}", ms(percentile(first, 50)),
                  ms(percentile(reload, 50)), ms(percentile(people, 50)), ms(percentile(evaluation, 50))]])


def run(bench) -> None:
    user = get_user_model().objects.create(username="bench-compare")
    session = Session.objects.create(owner=user, title="bench")
    runs = build_chain(session, 12)
    _bench_start(bench, user, session, runs[0])
    _bench_page(bench, user, session, runs)
    _bench_results(bench, user, session, runs[0])
    _bench_judge(bench, user, session, runs[0])
    _bench_results_page(bench)
