"""Signals other apps listen to: what each sender passes (the keyword arguments below, exactly).

``run_finished(sender=Run, run=<Run>, status=<str>)`` is sent by the worker
(:func:`engine.finalize.finalize`) after a run's final state is committed (succeeded, failed or
cancelled). Receivers run in the worker process: keep them quick and enqueue real work (the one
receiver, :mod:`comparisons.receivers`, chains a comparison's replayed turns on it).

``session_export(sender=Session, session=<Session>, run_ids=<set of run UUIDs>)`` is sent by the
Arbor JSON export (:mod:`archive.exporters`) for each exported session; ``run_ids`` are the runs in
the file. A receiver returns a dict of sections ``{key: JSON-able}`` that go into the session's
record (comparisons return ``{"comparisons": [...]}`` for the comparisons among those runs).

``session_import(sender=Session, session_id=<UUID>, owner=<User>, runs=<{file run id: run UUID}>,
sections=<{key: parsed JSON}>)`` is sent by the archive importer (:mod:`archive.importer`) inside
the transaction that wrote the session and its runs, for a session record with sections other
than the archive's own. A receiver writes the rows of the sections it knows and returns a list of
warnings (``str``) about what it skipped; it must not raise for bad content (a database error
rolls the session back).
"""

from django.dispatch import Signal

run_finished = Signal()
session_export = Signal()
session_import = Signal()
