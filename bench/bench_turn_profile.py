"""``bench turn_profile``: where Arbor's own time per turn goes, at depth 10 and 500 (issue 26).

One turn in-process, as the web and the worker do it: ``conversations.services.run_start`` (the
web half, its task not sent: this bench is the worker) then ``engine.execute.run_execute`` against
the scripted model answering 160 tokens at once (no model time to speak of). First the wall time
of 20 turns per depth (p50, no profiler), then one profiled pass of 20 turns (cProfile) giving each
phase's cumulative time per turn: the phases are the functions ``run_execute`` reads as (claim,
the turn's reads, the context, the model call, the final write, the stream's events, compaction's
measuring). Profiling adds overhead to every Python call, so the phases' milliseconds are larger
than the wall times; their shares are what to read.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from unittest import mock

from bench.harness import Bench, ms, percentile
from conversations import services
from engine import execute
from tests.support.factories import SessionFactory, UserFactory, build_chain

TURNS = 20
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
    user = UserFactory()
    walls, profiled = {}, {}
    for depth in (10, 500):
        session = SessionFactory(owner=user)
        build_chain(session, depth)
        session.refresh_from_db()
        for _ in range(3):  # warm-up: connections, the token counter, the HTTP client
            _one_turn(session)
        times = []
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
        profiled[depth] = (_phases(profile, TURNS), pstats.Stats(profile).total_tt / TURNS)
    bench.table("One turn in-process, web half + worker half, model answers at once (goal ≤ 30 ms at depth 500)",
                ["depth", "turns", "p50 ms", "p90 ms"],
                [[d, len(t), ms(percentile(t, 50)), ms(percentile(t, 90))] for d, t in walls.items()])
    rows = [[phase, ms(profiled[10][0][phase]), ms(profiled[500][0][phase])] for phase, _, _ in PHASES]
    rows.append(["profiled total per turn", ms(profiled[10][1]), ms(profiled[500][1])])
    bench.table("Where a turn's time goes (cProfile, cumulative per turn; phases nest: events and receivers "
                "fall inside the model call and the final state)", ["phase", "depth 10 ms", "depth 500 ms"], rows)
