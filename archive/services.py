"""Request-side actions of the archive app: store an uploaded archive as an import job and enqueue
its import (task ``archive.import_job``, by name: the import itself runs in the worker, see
:mod:`archive.importer`), and the job rows of an import started from the command line.

:func:`import_archive` (the import of one file, :mod:`archive.importer`) is re-exported here for
the command line and scripts.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from core import queue as task_queue
from core.errors import InvalidInput
from core.text import clean_text

from .importer import FORMAT_CHOICES, import_archive
from .models import ImportJob, JobStatus
from .report import ALREADY_IMPORTED, ImportReport

__all__ = ["DEMO_FILE", "FORMAT_CHOICES", "ImportReport", "demo_load", "import_archive",
           "import_command_finish", "import_command_job", "import_dir", "import_job_create"]

# The demo: "Tour of Arbor" and a fork of it, in Arbor JSON with compaction markers and a
# finished comparison.
DEMO_FILE = Path(__file__).resolve().parent / "demo" / "tour-of-arbor.json"


# --- import jobs (the upload page and the command line) ---------------------------------------------

def import_dir() -> Path:
    folder = Path(settings.ARBOR_IMPORT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


MAX_FILENAME_CHARS = 200
MAX_DISK_NAME_BYTES = 180  # + the job id: within the 255 bytes a file name may have (NAME_MAX)


def upload_filename(name) -> str:
    """The name an upload is shown by: its last path part, at most MAX_FILENAME_CHARS characters
    (the start and the extension kept). Raises InvalidInput for control characters (NUL)."""
    name = str(name or "upload").replace("\\", "/").rsplit("/", 1)[-1] or "upload"
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        extension = extension[:20] if dot and stem else ""
        name = f"{name[:MAX_FILENAME_CHARS - len(extension) - 2]}…{'.' + extension if extension else ''}"
    return clean_text(name, field="file name", max_length=MAX_FILENAME_CHARS)


def _disk_name(filename: str) -> str:
    """A safe file name for the stored copy, at most MAX_DISK_NAME_BYTES in UTF-8."""
    try:
        safe = get_valid_filename(filename.replace("…", ""))
    except SuspiciousFileOperation:  # nothing usable left ("..", only punctuation)
        safe = ""
    return safe.encode()[:MAX_DISK_NAME_BYTES].decode(errors="ignore") or "upload"


@transaction.atomic
def import_job_create(*, owner, upload, format: str = "auto") -> ImportJob:
    """Store an uploaded file and enqueue its import after commit.

    ``upload``: a Django ``UploadedFile``. Raises InvalidInput for a missing or empty file, an
    unknown format or a file over ``ARBOR_IMPORT_MAX_BYTES``.
    """
    if upload is None:
        raise InvalidInput("choose a file to import")
    if format not in FORMAT_CHOICES:
        raise InvalidInput(f"unknown format {format!r}: choose one of {', '.join(FORMAT_CHOICES)}")
    if not upload.size:
        raise InvalidInput("the file is empty")
    if upload.size > settings.ARBOR_IMPORT_MAX_BYTES:
        raise InvalidInput(f"the file is larger than {settings.ARBOR_IMPORT_MAX_BYTES // 2**20} MB")
    job_id = uuid.uuid4()
    filename = upload_filename(upload.name)
    path = import_dir() / f"{job_id}-{_disk_name(filename)}"
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    job = ImportJob.objects.create(
        id=job_id, owner=owner, filename=filename, path=str(path), format=format, size_bytes=upload.size,
    )
    _enqueue(job_id)
    return job


def _enqueue(job_id) -> None:
    """Send the import task (by its registered name) to ``ARBOR_IMPORT_QUEUE`` once the current
    transaction commits, so the worker finds the job row."""
    task_queue.send_on_commit(task_queue.IMPORT_JOB, str(job_id), queue=settings.ARBOR_IMPORT_QUEUE)


def import_command_job(*, owner, path: Path, format: str) -> ImportJob:
    """A job row for an import started from the command line (it shows on the import page)."""
    return ImportJob.objects.create(owner=owner, filename=path.name[:255], path=str(path), format=format,
                                    size_bytes=path.stat().st_size, status=JobStatus.RUNNING,
                                    started_at=timezone.now(), heartbeat_at=timezone.now(), attempts=1)


def import_command_finish(*, job: ImportJob, report: ImportReport) -> None:
    ImportJob.objects.filter(pk=job.pk).update(
        status=JobStatus.SUCCEEDED, report=report.as_json(), imported=report.imported, skipped=report.skipped,
        bytes_read=job.size_bytes, finished_at=timezone.now(),
    )


# --- the demo --------------------------------------------------------------------------------------

def demo_load(*, owner) -> tuple[ImportReport, bool]:
    """Import the demo sessions (:data:`DEMO_FILE`) for ``owner`` through the archive importer;
    returns the report and whether anything was new. Idempotent: a demo session this owner got
    before, even one deleted since, is not imported again (the importer's check by source id).

    Raises InvalidInput, writing nothing, when the demo file did not import cleanly (a broken file
    is a bug here: no half demo).
    """
    with transaction.atomic():  # also keeps the import in this thread (no writer threads)
        report = import_archive(path=DEMO_FILE, owner=owner, format="arbor")
        refused = [item for item in report.skipped_items if not item["reason"].startswith(ALREADY_IMPORTED)]
        warned = [w for item in report.imported_items for w in item["warnings"]]
        if refused or report.problems or warned:
            raise InvalidInput(f"the demo file did not import cleanly: {refused or report.problems or warned}")
    return report, report.imported > 0
