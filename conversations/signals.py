"""Signals other apps listen to.

``run_finished(sender=Run, run=<Run>, status=<str>)`` is sent by the worker after a run's final
state is committed (succeeded, failed or cancelled). Receivers run in the worker process: keep them
quick and enqueue real work (comparisons chain replayed turns on it; memory measures utilisation).

``session_export(sender=Session, session=<Session>, run_ids=<set of run UUIDs>)`` is sent by the
Arbor JSON export (:mod:`archive.exporters`) for each exported session; ``run_ids`` are the runs in
the file. A receiver returns a dict of sections ``{key: JSON-able}`` that go into the session's
record (comparisons return ``{"comparisons": [...]}`` for the comparisons among those runs).

``session_import(sender=Session, session=<Session>, owner=<User>, runs=<{file run id: Run id}>,
sections=<{key: parsed JSON}>)`` is sent by the archive importer inside the transaction that wrote
the session and its runs, for a session record with sections other than the archive's own. A
receiver writes the rows of the sections it knows and returns a list of warnings (``str``) about
what it skipped; it must not raise for bad content (a database error rolls the session back).
"""

from django.dispatch import Signal

run_finished = Signal()
session_export = Signal()
session_import = Signal()
