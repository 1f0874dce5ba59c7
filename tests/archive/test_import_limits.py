"""Imports that cannot exhaust memory: a file nested deeper than ARBOR_IMPORT_MAX_DEPTH or with a
record over ARBOR_IMPORT_MAX_RECORD_BYTES is refused before the parser sees it, naming the byte;
brackets inside strings (escaped quotes included, split across reads) do not count; the import
runs in a child process capped with RLIMIT_AS, so the 541-byte nest bomb fails its own job with
the reason and a small peak RSS, and fails its job (not the worker) even with the depth check off;
a job whose worker went silent is retried once, then failed with the reason."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from unittest.mock import patch

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from archive import isolation, jobs
from archive.models import ImportJob, JobStatus
from archive.source import ArchiveRefused, StructureGuard
from tests.support.factories import ImportJobFactory

LEVELS = 200_000


def nest_bomb() -> bytes:
    """A ZIP of one ``conversations.json``: 200,000 × ``[`` then 200,000 × ``]``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("conversations.json", b"[" * LEVELS + b"]" * LEVELS)
    return out.getvalue()


class Trickle(io.RawIOBase):
    """``data`` read ``size`` bytes at a time."""

    def __init__(self, data: bytes, size: int):
        self.data, self.size = data, size

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.size, len(self.data))
        buffer[:n], self.data = self.data[:n], self.data[n:]
        return n


def read_all(data: bytes, size: int = 1 << 20, **limits) -> int:
    guard = StructureGuard(Trickle(data, size), **{"max_depth": 64, "max_record_bytes": 10_000, **limits})
    return len(io.BufferedReader(guard).read())


def test_the_bomb_is_541_bytes_or_so():
    assert len(nest_bomb()) < 1024


def test_too_deep_is_refused_at_the_byte_it_happens():
    with pytest.raises(ArchiveRefused, match="nested more than 64 levels at byte 64 "):
        read_all(b"[" * LEVELS + b"]" * LEVELS)
    assert read_all(b"[" * 64 + b"]" * 64) == 128


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1 << 20])
def test_brackets_in_strings_do_not_count(size):
    text = json.dumps([{"content": "[" * 500 + '\\"{{{' + "\\" * 9, "x": ['a"b', "]]]"]}]).encode()
    assert read_all(text, size) == len(text)


def test_a_record_too_large_is_refused():
    records = json.dumps([{"t": "x" * 100}, {"t": "y" * 20_000}]).encode()
    with pytest.raises(ArchiveRefused, match=r"a single record is larger than 10000 bytes \(from byte 112;"):
        read_all(records, 4096)


def test_broken_json_lines_do_not_add_up(settings):
    lines = b'{"a": [1, 2\n' * 100 + b'{"ok": "[[["}\n'
    guard = StructureGuard(io.BytesIO(lines), max_depth=3, max_record_bytes=1000, record_depth=0, lines=True)
    assert len(io.BufferedReader(guard).read()) == len(lines)


def _upload(api, payload: bytes, name="bomb.zip") -> str:
    """Store an upload as the API does, but enqueue nothing (a session's real worker must not take it)."""
    from archive import services

    with patch.object(services.task_queue, "send_on_commit"):
        job = services.import_job_create(owner=api.user, upload=SimpleUploadedFile(name, payload))
    return str(job.pk)


@pytest.fixture
def api(api, user):
    api.user = user
    return api


@pytest.mark.django_db(transaction=True)
def test_the_nest_bomb_fails_its_job_with_the_reason_in_a_capped_child(api, capsys):
    job_id = _upload(api, nest_bomb())
    outcome = isolation.run_child(job_id, 1024)
    job = ImportJob.objects.get(pk=job_id)
    with capsys.disabled():
        print(f"\nnest bomb ({len(nest_bomb())} bytes): job {job.status}, child exit {outcome.exit_code}, "
              f"peak RSS {outcome.peak_rss_mb:.0f} MiB; {job.error}")
    assert job.status == JobStatus.FAILED
    assert "nested more than 64 levels at byte 64" in job.error
    assert outcome.exit_code == 0 and outcome.peak_rss_mb < 300


@pytest.mark.django_db(transaction=True)
def test_without_the_depth_check_the_memory_limit_still_fails_only_the_job(api, monkeypatch, capsys):
    """The depth check off (in the child's environment): the parser's memory grows until the
    child's RLIMIT_AS stops it; the job fails with the reason, this process is untouched."""
    monkeypatch.setenv("ARBOR_IMPORT_MAX_DEPTH", str(10 * LEVELS))
    monkeypatch.setenv("ARBOR_IMPORT_MEMORY_LIMIT_MB", "768")
    job_id = _upload(api, nest_bomb())
    outcome = isolation.run_child(job_id, 768)
    isolation.ImportJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(status=JobStatus.FAILED,
                                                                                 error="left running")
    job = ImportJob.objects.get(pk=job_id)
    with capsys.disabled():
        print(f"\nnest bomb, depth check off, 768 MiB cap: job {job.status}, child exit {outcome.exit_code}, "
              f"peak RSS {outcome.peak_rss_mb:.0f} MiB; {job.error}")
    assert job.status == JobStatus.FAILED
    assert "more memory than its limit of 768 MiB" in job.error
    assert outcome.peak_rss_mb <= 768


@pytest.mark.django_db(transaction=True)
def test_a_child_that_dies_fails_its_job(api, settings, monkeypatch):
    """A child killed outright (here: a limit too small to start Python) leaves its job running;
    the parent fails it, naming how the child ended."""
    settings.ARBOR_IMPORT_MEMORY_LIMIT_MB = 8
    job_id = _upload(api, b'[{"title": "t", "mapping": {}}]', name="small.json")
    ImportJob.objects.filter(pk=job_id).update(status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    outcome = isolation.import_job_isolated(job_id)
    job = ImportJob.objects.get(pk=job_id)
    assert outcome.exit_code != 0
    assert job.status == JobStatus.FAILED and "The import process" in job.error and "8 MiB" in job.error


@pytest.mark.django_db
def test_silent_jobs_are_retried_once_then_failed(user, settings, monkeypatch):
    sent = []
    monkeypatch.setattr(jobs.task_queue, "send", lambda name, *args, queue: sent.append((name, args)))
    old = timezone.now() - timedelta(seconds=settings.ARBOR_IMPORT_STALE_SECONDS + 5)
    fresh = ImportJobFactory(owner=user, filename="f", path="/nonexistent", status=JobStatus.RUNNING,
                             heartbeat_at=timezone.now(), attempts=1)
    once = ImportJobFactory(owner=user, filename="a", path="/nonexistent", status=JobStatus.RUNNING,
                            heartbeat_at=old, attempts=1)
    twice = ImportJobFactory(owner=user, filename="b", path="/nonexistent", status=JobStatus.RUNNING,
                             heartbeat_at=old, attempts=2)
    assert jobs.reap_stale_import_jobs() == (1, 1)
    assert sent == [("archive.import_job", (str(once.pk),))]
    twice.refresh_from_db()
    assert twice.status == JobStatus.FAILED and "went silent" in twice.error
    fresh.refresh_from_db()
    assert fresh.status == JobStatus.RUNNING
