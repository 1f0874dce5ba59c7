"""What a run's stream reads from the run itself, given by the app that owns runs (so this package
imports none): :class:`RunSource`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RunSource:
    """What a run's stream reads from the run itself, given by the app that owns runs
    (:data:`conversations.selectors.RUN_SOURCE`).

    ``finished(run_id) -> bool``: whether the run has finished (its stream may have expired);
    ``ending(run_id) -> (answer, done)``: its stored final answer (``None`` when it has none) and
    the ``done`` event's data ``{"status", "error", "usage"}``.
    """

    finished: Callable[[object], bool]
    ending: Callable[[object], tuple[str | None, dict]]
