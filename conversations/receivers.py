"""Receivers: a session's first answer asks for its title in the background (:mod:`conversations.tasks`).

``run_finished`` is sent in the worker after a run's final state is committed; the receiver only
enqueues, the task does the model call.
"""

from __future__ import annotations

import logging

from django.dispatch import receiver

from .models import RunStatus
from .signals import run_finished
from .tasks import enqueue_title

log = logging.getLogger(__name__)


@receiver(run_finished, dispatch_uid="conversations.background_title")
def title_after_first_answer(sender, run, status, **kwargs) -> None:
    """When the first run of a session succeeded, enqueue its background title."""
    if status != RunStatus.SUCCEEDED:
        return
    try:
        enqueue_title(run)
    except Exception:  # the run is final either way; the session keeps the title of its first message
        log.exception("could not enqueue the title of run %s's session", run.pk)
