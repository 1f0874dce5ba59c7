"""Issue 4 figures: token-count error against the usage the local model reports, context building
with memory rules at depth, and compaction timings (scripted summariser and the real local model).

The local model (SmolLM2-135M-Instruct under llama-cpp-python's server) is started on a free port
unless ``ARBOR_BENCH_LOCAL_MODEL_URL`` names a running one; without llama-cpp-python the local-model
tables are skipped with a note. llama.cpp's server sends no usage in streams, so the reference is
the ``usage.prompt_tokens`` of a non-streamed call with ``max_tokens=1`` on the same messages.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.harness import Bench, ms, percentile, timed
from core.tokens import TokenCounter
from engine.compaction import compaction_consider, compaction_execute
from engine.context import build_context, context_tokens
from memory.models import Agent
from tests.support.factories import AgentFactory, SessionFactory, UserFactory, add_chain, new_input

MODEL = "smollm2-135m-instruct"
ROOT = Path(__file__).resolve().parent.parent

SAMPLES = [
    "Hello! Can you help me plan a trip to Lisbon in May?",
    "Sure. Lisbon in May is warm (around 22 °C). Plan three days: Alfama and the castle, Belém, then Sintra.",
    "What does this Python do?\n```python\nprint(sorted({3: 'a', 1: 'b'}.items(), key=lambda kv: kv[1]))\n```",
    "It sorts the dict's (key, value) pairs by value and prints [(3, 'a'), (1, 'b')].",
    "My order #48213-B shipped on 2024-03-07 but the tracking number TRK-99812-ZX shows nothing.",
    "Tracking often appears 24–48 hours after shipping; if nothing shows by Friday, contact the carrier.",
    "Explain the difference between TCP and UDP in two sentences.",
    "TCP is connection-oriented and reliable, retransmitting lost packets in order; UDP sends datagrams "
    "without delivery guarantees, trading reliability for lower latency.",
    "Translate to French: the cat sleeps on the warm windowsill all afternoon.",
    "Le chat dort sur le rebord de fenêtre chaud tout l'après-midi.",
    "SELECT user_id, COUNT(*) FROM orders WHERE created_at > NOW() - INTERVAL '7 days' GROUP BY user_id;",
    "That query counts each user's orders from the last seven days.",
]


@contextmanager
def local_model_url():
    """A running local model's base URL, or None when llama-cpp-python is not installed."""
    url = os.environ.get("ARBOR_BENCH_LOCAL_MODEL_URL")
    if url:
        yield url
        return
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        yield None
        return
    from tests.support.processes import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "connections.local_model", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            yield None
            return
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _contexts() -> list[list[dict]]:
    """Contexts of 2 to 12 messages from the samples (a system prompt first)."""
    out = []
    for n in (1, 2, 3, 4, 6, 8, 10, 12):
        for start in (0, 5):
            body = [{"role": "user" if i % 2 == 0 else "assistant", "content": SAMPLES[(start + i) % len(SAMPLES)]}
                    for i in range(n)]
            if body[-1]["role"] != "user":
                body.append({"role": "user", "content": "Thanks, continue."})
            out.append([{"role": "system", "content": "You are a helpful assistant."}] + body)
    return out


def bench_token_error(bench: Bench, url: str) -> None:
    exact = TokenCounter(base_url=url)
    naive = TokenCounter(base_url=url)
    naive._mode = "estimate"
    corrected = TokenCounter(base_url=url)
    corrected._mode = "estimate"
    rows_by = {"server tokenizer (/extras/tokenize) + ChatML overhead": [], "estimate chars/4": [],
               "estimate corrected by reported usage": []}
    calls = []
    for messages in _contexts():
        start = time.perf_counter()
        usage = httpx.post(f"{url}/chat/completions", timeout=120, json={
            "model": MODEL, "messages": messages, "max_tokens": 1, "temperature": 0}).json()["usage"]
        calls.append(time.perf_counter() - start)
        reported = usage["prompt_tokens"]
        for name, counter in zip(rows_by, (exact, naive, corrected), strict=True):
            counted = context_tokens(counter, messages)
            rows_by[name].append((counted - reported, (counted - reported) / reported))
        # the corrected estimate learns from each reported figure after it was measured
        from core.tokens import REPLY_PRIMING, overhead_for

        chars = sum(len(m["content"]) for m in messages)
        corrected.observe(chars, reported - REPLY_PRIMING - sum(overhead_for(m.get("role")) for m in messages))
    rows = []
    for name, errors in rows_by.items():
        abs_tokens = [abs(e[0]) for e in errors]
        pct = [100 * e[1] for e in errors]
        rows.append([name, len(errors), f"{statistics.mean(abs_tokens):.1f}", f"{statistics.mean(pct):+.1f}%",
                     f"{min(pct):+.1f}% … {max(pct):+.1f}%"])
    bench.table(
        f"Token count vs usage reported by the local model ({MODEL}, non-streamed calls, {len(calls)} contexts "
        f"of 2–13 messages; reference call p50 {ms(percentile(calls, 50))} ms)",
        ["counter", "contexts", "mean |error| tokens", "mean error", "range"], rows)


def bench_context_build(bench: Bench) -> None:
    user = UserFactory()
    rows = []
    for depth in (100, 1000):
        for label, fields in (("no window", {}), ("window 20", {"memory_window_size": 20}),
                              ("budget 2k tokens", {"context_window": 2560, "reserved_output_tokens": 512})):
            agent = AgentFactory(owner=user, name=f"{label}-{depth}", **fields)
            session = SessionFactory(owner=user)
            runs = add_chain(session, None, depth, agent=agent, words=8)
            run = new_input(session, runs[-1], agent=agent)
            counter = TokenCounter(base_url="http://127.0.0.1:9/v1")
            counter._mode = "estimate"
            with CaptureQueriesContext(connection) as queries:
                built = build_context(run, counter=counter)
            times = timed(lambda: build_context(run, counter=counter), repeat=10, warmup=1)
            import json

            rows.append([depth, label, ms(percentile(times, 50)), ms(percentile(times, 95)), len(queries),
                         len(built.messages), built.tokens, len(json.dumps(built.spec.to_json()))])
    bench.table("Context build with memory rules (estimate counter; includes the path read)",
                ["depth", "agent", "p50 ms", "p95 ms", "queries", "messages sent", "tokens", "spec bytes"], rows)


def bench_pins_and_summaries(bench: Bench, depth: int = 500) -> None:
    """Context build at depth 500: the same branch without pins and summaries (the figure before
    pins existed) and with 10 pinned turns and 3 ready summaries on the path (the newest applies;
    the pins before it are sent verbatim beside it), with the window of 20 messages and without."""
    from memory.models import Compaction, CompactionStatus, Pin

    user = UserFactory()
    counter = TokenCounter(base_url="http://127.0.0.1:9/v1")
    counter._mode = "estimate"
    rows = []
    for label, fields in (("no window", {}), ("window 20", {"memory_window_size": 20})):
        agent = AgentFactory(owner=user, name=f"pins-{label}", **fields)
        session = SessionFactory(owner=user)
        runs = add_chain(session, None, depth, agent=agent, words=8)
        run = new_input(session, runs[-1], agent=agent)
        for setup in ("without pins or summaries", "10 pins + 3 summaries"):
            if setup.startswith("10"):
                for i in range(10):
                    Pin.objects.create(run=runs[5 + i * 45])
                for at in (150, 300, 450):
                    Compaction.objects.create(run=runs[at], memory_id=agent.memory_id, status=CompactionStatus.READY,
                                              from_depth=at - 50, summary="A summary of the earlier turns. " * 20)
            with CaptureQueriesContext(connection) as queries:
                built = build_context(run, counter=counter)
            times = timed(lambda: build_context(run, counter=counter), repeat=10, warmup=1)
            rows.append([depth, label, setup, ms(percentile(times, 50)), ms(percentile(times, 95)), len(queries),
                         len(built.messages), len(built.spec.pinned), built.tokens])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    bench.table(f"Context build at depth {depth} with pins and summaries (estimate counter; includes the path read; "
                f"load average {load})",
                ["depth", "agent", "path holds", "p50 ms", "p95 ms", "queries", "messages sent", "pinned sent",
                 "tokens"], rows)


def _compaction_rows(label: str, turns: int, agent: Agent, user, repeat: int) -> list:
    rows = []
    for _ in range(repeat):
        session = SessionFactory(owner=user)
        runs = add_chain(session, None, turns, agent=agent, words=12)
        start = time.perf_counter()
        pending = compaction_consider(run=runs[-1])
        measure = time.perf_counter() - start
        if pending is None:
            rows.append([label, turns, ms(measure), "-", "-", "-", "did not fire"])
            continue
        start = time.perf_counter()
        done = compaction_execute(compaction_id=pending.pk)
        execute = time.perf_counter() - start
        rows.append([label, turns, ms(measure), ms(execute),
                     f"{done.utilisation_before:.2f} → {done.utilisation_after:.2f}",
                     f"{done.tokens_before} → {done.tokens_after}",
                     f"{done.prompt_tokens}+{done.completion_tokens}" if done.prompt_tokens is not None else "-"])
    return rows


def bench_compaction(bench: Bench, local_url: str | None) -> None:
    from django.test.utils import override_settings

    user = UserFactory()
    policy = {"threshold": 0.8, "strategies": [{"type": "summarize", "keep_recent_turns": 3, "max_tokens": 96}]}
    rows = []
    scripted = AgentFactory(owner=user, name="scripted", context_window=1024, reserved_output_tokens=128,
                            compaction=policy)
    with override_settings(ARBOR_COMPACTION_QUEUE="bench-memory-unconsumed"):
        rows += _compaction_rows("scripted summariser", 20, scripted, user, repeat=3)
        if local_url:
            with override_settings(OPENAI_BASE_URL=local_url):
                real = AgentFactory(owner=user, name="local", model=MODEL, context_window=1024,
                                    reserved_output_tokens=128, compaction=policy)
                rows += _compaction_rows(f"{MODEL} summariser", 20, real, user, repeat=3)
    bench.table("Compaction after a run: measure (run_finished hook) and the task's work (summarise 17 of 20 turns)",
                ["summariser", "turns", "measure ms", "compaction ms", "utilisation", "tokens", "summary usage"], rows)


def bench_local_conversation(bench: Bench, url: str, turns: int = 60) -> None:
    """The end-to-end scenario on the local model, in-process with Celery eager: 60 turns, a
    1,024-token window, a fact in turn 1. Every 6th turn the exact context sent is replayed
    non-streamed to read the model's own prompt_tokens (llama.cpp sends no usage in streams)."""
    from django.test.utils import override_settings

    from config.celery import app
    from conversations import context_spec as ctx
    from conversations import services
    from conversations.models import Run, Step, StepKind
    from memory.models import Compaction
    from tests.support.scenarios import FACT, TOPICS

    user = UserFactory()
    agent = AgentFactory(owner=user, name="local-60", model=MODEL, context_window=1024,
                         reserved_output_tokens=128, params={"max_tokens": 12, "temperature": 0.0},
                         compaction={"threshold": 0.8, "strategies": [
                             {"type": "summarize", "keep_recent_turns": 3, "max_tokens": 96}]})
    session = SessionFactory(owner=user)
    inputs = [f"Remember this: my secret code word is {FACT}."] + [
        f"Tell me one short fact about {t}." for t in TOPICS][: turns - 1]
    errors, turn_seconds = [], []
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        with override_settings(OPENAI_BASE_URL=url, ARBOR_MODEL=MODEL):
            for i, text in enumerate(inputs):
                start = time.perf_counter()
                run = services.run_start(session=session, agent=agent, input=text)
                run = Run.objects.get(pk=run.pk)
                assert run.status == "succeeded", run.error
                step = Step.objects.filter(run=run, kind=StepKind.LLM_CALL).latest("started_at")
                turn_seconds.append(time.perf_counter() - start)
                if i % 6 == 5:
                    sent = ctx.rebuild(run, step.request["context"])
                    usage = httpx.post(f"{url}/chat/completions", timeout=120, json={
                        "model": MODEL, "messages": sent, "max_tokens": 1}).json()["usage"]
                    errors.append((step.request["context_tokens"], usage["prompt_tokens"]))
    finally:
        app.conf.task_always_eager = eager
    rows = []
    for c in Compaction.objects.filter(run__session=session).order_by("run__depth"):
        rows.append([c.run.depth + 1, c.status, f"{c.utilisation_before:.2f} → {c.utilisation_after or 0:.2f}",
                     f"{c.tokens_before} → {c.tokens_after}", f"{c.duration_seconds():.1f}",
                     f"{c.prompt_tokens}+{c.completion_tokens}", "yes" if FACT in c.summary else "no"])
    bench.table(f"{turns}-turn conversation on {MODEL}, 1,024-token window, threshold 0.8 "
                f"(turn p50 {ms(percentile(turn_seconds, 50))} ms, p95 {ms(percentile(turn_seconds, 95))} ms)",
                ["after turn", "status", "utilisation", "tokens", "summary s", "summary usage", "turn-1 fact kept"],
                rows)
    diffs = [counted - reported for counted, reported in errors]
    bench.table("Context tokens counted by Arbor vs prompt_tokens reported by the local model (same messages)",
                ["contexts", "counted (mean)", "reported (mean)", "mean error", "max |error|", "ever over window"],
                [[len(errors), f"{statistics.mean(c for c, _ in errors):.1f}",
                  f"{statistics.mean(r for _, r in errors):.1f}", f"{statistics.mean(diffs):+.2f}",
                  max(abs(d) for d in diffs), "yes" if any(r > 896 for _, r in errors) else "no"]])


def run(bench: Bench) -> None:
    from django.db import transaction

    bench_context_build(bench)
    bench_pins_and_summaries(bench)
    with local_model_url() as url:
        with transaction.atomic():  # nothing from on_commit reaches a broker: the task is called in-process
            bench_compaction(bench, url)
            transaction.set_rollback(True)
        if url:
            bench_token_error(bench, url)
            bench_local_conversation(bench, url)
        else:
            bench.table("Token count vs reported usage", ["note"], [["llama-cpp-python is not installed: skipped"]])
