"""Signals other apps listen to.

``run_finished(sender=Run, run=<Run>, status=<str>)`` is sent by the worker after a run's final
state is committed (succeeded, failed or cancelled). Receivers run in the worker process: keep them
quick and enqueue real work (comparisons chain replayed turns on it; memory measures utilisation).
"""

from django.dispatch import Signal

run_finished = Signal()
