"""``bench turn_profile``: where Arbor's own time per turn goes, at depth 10 and 500 (issue 26).

One turn in-process, as the web and the worker do it: ``conversations.services.run_start`` (the
web half, its task not sent: this bench is the worker) then ``engine.execute.run_execute`` against
the scripted model (in its own process) answering 160 tokens at once. First the wall time
of 20 turns per depth (p50, no profiler), then one profiled pass of 20 turns (cProfile) giving each
phase's cumulative time per turn: the phases are the functions ``run_execute`` reads as (claim,
the turn's reads, the context, the model call, the final write, the stream's events, compaction's
measuring). Profiling adds overhead to every Python call, so the phases' milliseconds are larger
than the wall times; their shares are what to read.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

from django.test import override_settings

from bench.harness import Bench, ms, percentile
from conversations import services
from engine import execute
from tests.support.factories import SessionFactory, UserFactory, build_chain
from tests.support.processes import start_model_server

TURNS = 20
TOP = int(os.environ.get("ARBOR_BENCH_PROFILE_TOP", "25"))  # the functions listed by own time
TEXT = "[[tokens:160]] [[delay:0]] and then?"

# (phase, file path suffix, function name): cumulative time of that function per turn.
PHASES = [
    ("web: run_start (lookups, insert, input)", "conversations/services.py", "run_start"),
    ("worker: claim", "engine/execute.py", "claim"),
    ("worker: the turn's reads (path, memory ids, settings, budget)", "engine/turn.py", "start"),
    ("worker: context build", "engine/context.py", "build_context"),
    ("worker: context built and its step written (the build included)", "engine/execute.py", "_first_context"),
    ("worker: model call (HTTP, streamed, instant model)", "engine/model_call.py", "stream_answer"),
    ("worker: final state (answer, run, step)", "engine/finalize.py", "_write_final"),
    ("worker: events published (status, deltas, done)", "streams/backends.py", "publish"),
    ("worker: run_finished receivers", "django/dispatch/dispatcher.py", "send"),
    ("worker: compaction's measuring", "engine/compaction.py", "consider_after_run"),
]


def _walls() -> list[tuple[str, object, str]]:
    """(phase, owner, attribute): the functions timed by wall clock, patched where their caller
    looks them up."""
    from engine import compaction, finalize
    from engine.turn import Turn

    return [
        ("web: run_start", services, "run_start"),
        ("worker: claim", execute, "claim"),
        ("worker: the turn's reads (Turn.start)", Turn, "start"),
        ("worker: context build", execute, "_build"),
        ("worker: model call (HTTP, streamed; the model process's own time included)", execute, "stream_answer"),
        ("worker: final state written (one transaction)", finalize, "_write_final"),
        ("worker: compaction's measuring (after done)", compaction, "consider_after_run"),
        ("worker: finalize (final state, done, receivers, measuring)", execute, "finalize"),
        ("worker: run_execute (all of the worker's turn)", execute, "run_execute"),
    ]


@contextmanager
def _timing(seconds: dict[str, list[float]]):
    """Patch every function of :func:`_walls` with a wrapper that adds its wall time to ``seconds``."""
    def timed(label, owner, fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds.setdefault(label, []).append(time.perf_counter() - started)
        return staticmethod(wrapper) if isinstance(owner, type) else wrapper

    with ExitStack() as stack:
        for label, owner, name in _walls():
            stack.enter_context(mock.patch.object(owner, name, timed(label, owner, getattr(owner, name))))
        yield


def _one_turn(session) -> None:
    with mock.patch.object(services, "_enqueue"):  # no task: this process is the worker
        run = services.run_start(session=session, input=TEXT)
    execute.run_execute(run_id=str(run.pk))


def _phases(profile: cProfile.Profile, turns: int) -> dict[str, float]:
    """Seconds per turn of each phase, from the profile's cumulative times."""
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    found = {}
    for phase, suffix, name in PHASES:
        found[phase] = sum(ct for (file, _, fn), (_, _, _, ct, _) in stats.items()
                           if fn == name and file.endswith(suffix)) / turns
    return found


def run(bench: Bench) -> None:
    """The scripted model runs in a process of its own: in this one its threads (parsing the whole
    context at depth 500) would share the interpreter lock with the turn being timed."""
    log_dir = Path(tempfile.mkdtemp(prefix="arbor-bench-profile-"))
    model, base_url = start_model_server(log_dir)
    try:
        with override_settings(OPENAI_BASE_URL=base_url):
            _measure(bench)
    finally:
        model.stop()


def _measure(bench: Bench) -> None:
    user = UserFactory()
    walls, profiled, phases = {}, {}, {}
    for depth in (10, 500):
        session = SessionFactory(owner=user)
        build_chain(session, depth)
        session.refresh_from_db()
        for _ in range(3):  # warm-up: connections, the token counter, the HTTP client
            _one_turn(session)
        times, phases[depth] = [], {}
        with _timing(phases[depth]):
            for _ in range(TURNS):
                started = time.perf_counter()
                _one_turn(session)
                times.append(time.perf_counter() - started)
        walls[depth] = times
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(TURNS):
            _one_turn(session)
        profile.disable()
        profiled[depth] = (_phases(profile, TURNS), pstats.Stats(profile).total_tt / TURNS, _top(profile, TURNS))
    bench.table("One turn in-process, web half + worker half, model answers at once (goal ≤ 30 ms at depth 500)",
                ["depth", "turns", "p50 ms", "p90 ms"],
                [[d, len(t), ms(percentile(t, 50)), ms(percentile(t, 90))] for d, t in walls.items()])
    bench.table("Where a turn's time goes, wall clock (no profiler; p50 of each phase over the turns above; phases "
                "nest: finalize holds the final state and the measuring)", ["phase", "depth 10 ms", "depth 500 ms"],
                [[label, *(ms(percentile(phases[d].get(label, [0.0]), 50)) for d in (10, 500))]
                 for label, _, _ in _walls()])
    rows = [[phase, ms(profiled[10][0][phase]), ms(profiled[500][0][phase])] for phase, _, _ in PHASES]
    rows.append(["profiled total per turn", ms(profiled[10][1]), ms(profiled[500][1])])
    bench.table("Where a turn's time goes (cProfile, cumulative per turn; phases nest: events and receivers "
                "fall inside the model call and the final state)", ["phase", "depth 10 ms", "depth 500 ms"], rows)
    for depth, (_, _, top) in profiled.items():
        bench.table(f"Depth {depth}: the {TOP} functions with the most own time per turn (cProfile)",
                    ["function", "calls per turn", "own ms per turn", "cumulative ms per turn"], top)


def _top(profile: cProfile.Profile, turns: int) -> list[list]:
    """The ``TOP`` functions by own time (``tottime``), per turn."""
    stats = pstats.Stats(profile).stats
    ranked = sorted(stats.items(), key=lambda item: -item[1][2])[:TOP]
    return [[f"{Path(file).parent.name}/{Path(file).name}:{line} {fn}", f"{nc / turns:.0f}", ms(tt / turns),
             ms(ct / turns)] for (file, line, fn), (_, nc, tt, ct, _) in ranked]
