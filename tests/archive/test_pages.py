"""The import page (upload, progress, report), the import task on a real Celery worker, export
downloads, and other users' jobs and sessions answering 404."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from archive import jobs, services
from archive.models import ImportJob
from conversations.models import Run, Session
from tests.support.factories import ImportJobFactory, RunFactory, SessionFactory, UserFactory
from tests.support.processes import wait_for


def _upload(data_dir: Path, name="sharegpt.json") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, (data_dir / name).read_bytes(), content_type="application/json")


@pytest.mark.django_db
def test_import_page_lists_only_own_jobs(client, user, other_user, tmp_path):
    """The page has the upload form (multipart, CSRF token, htmx upload progress) and the user's own imports."""
    ImportJobFactory(owner=user, filename="mine.json", path=str(tmp_path / "x"))
    ImportJobFactory(owner=other_user, filename="theirs.json", path=str(tmp_path / "y"))
    client.force_login(user)
    response = client.get(reverse("archive:import"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'enctype="multipart/form-data"' in html and 'hx-encoding="multipart/form-data"' in html
    assert "csrfmiddlewaretoken" in html and "htmx:xhr:progress" in html
    assert "mine.json" in html and "theirs.json" not in html


@pytest.mark.django_db
def test_upload_stores_the_file_creates_a_job_and_enqueues_after_commit(
    client, user, data_dir, settings, tmp_path, django_capture_on_commit_callbacks, monkeypatch,
):
    """POST stores the upload, creates a queued job and enqueues the task once the transaction commits."""
    settings.ARBOR_IMPORT_DIR = str(tmp_path / "imports")
    sent = []
    monkeypatch.setattr(services, "_enqueue", lambda job_id: sent.append(str(job_id)))
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("archive:upload"), {"file": _upload(data_dir), "format": "auto"})
    job = ImportJob.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == reverse("archive:job", args=[job.pk])
    assert sent == [str(job.pk)]
    assert job.status == "queued" and job.filename == "sharegpt.json"
    assert Path(job.path).read_bytes() == (data_dir / "sharegpt.json").read_bytes()
    page = client.get(reverse("archive:job", args=[job.pk]), headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' in page.content.decode() and "<html" not in page.content.decode()


@pytest.mark.django_db
def test_bad_uploads_answer_400_with_a_message_and_change_nothing(client, user, data_dir):
    client.force_login(user)
    response = client.post(reverse("archive:upload"), {"format": "auto"})
    assert response.status_code == 400 and "choose a file" in response.content.decode()
    response = client.post(reverse("archive:upload"), {"file": _upload(data_dir), "format": "pdf"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 400 and "unknown format" in response.content.decode()
    empty = SimpleUploadedFile("e.json", b"", content_type="application/json")
    response = client.post(reverse("archive:upload"), {"file": empty, "format": "auto"})
    assert response.status_code == 400 and "empty" in response.content.decode()
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_upload_limit(client, user, data_dir, settings):
    settings.ARBOR_IMPORT_MAX_BYTES = 10
    client.force_login(user)
    response = client.post(reverse("archive:upload"), {"file": _upload(data_dir), "format": "auto"})
    assert response.status_code == 400 and "larger than" in response.content.decode()


@pytest.mark.django_db
def test_job_runs_once_and_a_resumed_job_skips_what_it_wrote(user, data_dir, settings, tmp_path):
    """Executing a job claims it (a second delivery does nothing); a job taken over after its worker
    went silent skips the records it had already imported."""
    settings.ARBOR_IMPORT_DIR = str(tmp_path)
    path = tmp_path / "s.json"
    path.write_bytes((data_dir / "sharegpt.json").read_bytes())
    job = ImportJobFactory(owner=user, filename="s.json", path=str(path), size_bytes=path.stat().st_size)
    done = jobs.import_job_execute(job_id=job.pk)
    assert done.status == "succeeded" and done.imported == 4 and done.report["skipped"] == 1
    assert not path.exists()  # the upload is removed once imported
    assert jobs.import_job_execute(job_id=job.pk) is None

    path.write_bytes((data_dir / "sharegpt.json").read_bytes())
    ImportJob.objects.filter(pk=job.pk).update(status="running", heartbeat_at=done.finished_at.replace(year=2000))
    again = jobs.import_job_execute(job_id=job.pk)
    assert again.attempts == 2 and again.imported == 0
    assert sum("earlier attempt of this job" in s["reason"] for s in again.report["skipped_items"]) == 4
    assert Session.objects.filter(owner=user).count() == 4


@pytest.mark.django_db
def test_other_users_jobs_and_exports_are_404(client, user, other_user, tmp_path):
    """Another user's import job, session export and run (as ?run=) answer 404, like unknown ids."""
    theirs = ImportJobFactory(owner=other_user, filename="t.json", path=str(tmp_path / "t"))
    their_session = SessionFactory(owner=other_user)
    their_run = RunFactory(session=their_session)
    mine = SessionFactory(owner=user)
    RunFactory(session=mine)
    client.force_login(user)
    assert client.get(reverse("archive:job", args=[theirs.pk])).status_code == 404
    assert client.get("/archive/jobs/not-a-uuid/").status_code == 404  # no UUID: the <uuid:> route does not match
    for fmt in ("arbor", "jsonl", "chatgpt", "markdown"):
        url = reverse("archive:session_export", args=[their_session.pk, fmt])
        assert client.get(url).status_code == 404
    url = reverse("archive:session_export", args=[mine.pk, "markdown"])
    assert client.get(url, {"run": str(their_run.pk)}).status_code == 404
    assert client.get(reverse("archive:session_export", args=[mine.pk, "pdf"])).status_code == 400


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_login(client):
    response = client.get(reverse("archive:import"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_export_downloads(client, user):
    """Each export is a download with its content type and file name."""
    session = SessionFactory(owner=user, title="Kyoto trip")
    run = RunFactory(session=session, turn=("hello", "hi there"))
    Session.objects.filter(pk=session.pk).update(active_run=run)
    client.force_login(user)
    expected = {"arbor": ("application/json", "kyoto-trip.json"), "jsonl": ("application/x-ndjson", "kyoto-trip.jsonl"),
                "chatgpt": ("application/json", "kyoto-trip-conversations.json"),
                "markdown": ("text/markdown; charset=utf-8", "kyoto-trip.md")}
    bodies = {}
    for fmt, (content_type, filename) in expected.items():
        response = client.get(reverse("archive:session_export", args=[session.pk, fmt]))
        assert response.status_code == 200 and response["Content-Type"] == content_type
        assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
        bodies[fmt] = b"".join(response.streaming_content).decode()
    assert json.loads(bodies["arbor"])[0]["runs"][0]["messages"][1]["content"] == "hi there"
    line = json.loads(bodies["jsonl"].splitlines()[0])
    assert line["format"] == "arbor.run/1" and line["output"] == "hi there" and line["session"]["title"] == "Kyoto trip"
    assert "## User\n\nhello" in bodies["markdown"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_upload_is_imported_by_a_real_worker_and_the_page_shows_the_report(client, data_dir, celery_worker):
    """Through the page: upload (htmx) → the Celery worker imports → the polled partial shows the
    report with links to the new sessions and the skipped conversation's reason."""
    user = UserFactory()
    client.force_login(user)
    response = client.post(reverse("archive:upload"), {"file": _upload(data_dir, "chatgpt_conversations.json"),
                                                       "format": "auto"}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and 'hx-trigger="every 1s"' in response.content.decode()
    job = ImportJob.objects.get(owner=user)
    wait_for(lambda: ImportJob.objects.filter(pk=job.pk, status="succeeded").exists(), timeout=60,
             message="the worker to import the upload")
    page = client.get(reverse("archive:job", args=[job.pk]), headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 1s"' not in page  # polling stops when the job is done
    assert "2 conversations imported (5 runs, 12 messages)" in page and "2 skipped" in page
    assert "the message graph has a cycle" in page and "no mapping" in page
    session = Session.objects.get(owner=user, title="Branches and tools")
    assert reverse("conversations:session_detail", args=[session.pk]) in page
    assert Run.objects.filter(session=session).count() == 4
    job.refresh_from_db()
    assert not Path(job.path).exists()
    full = client.get(reverse("archive:job", args=[job.pk]))
    assert full.status_code == 200 and "<html" in full.content.decode()
