"""The JSON API of the archive: upload an export (multipart) → an import job → its status and
report; export a session in each format (and import the Arbor JSON again for the same tree);
401 without credentials, 404 for another user's jobs, sessions and runs, 400 with nothing written."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import ApiToken
from archive import jobs, services
from archive.models import ImportJob
from conversations.models import Session
from tests.archive.conftest import tree_signature
from tests.support.factories import ImportJobFactory, RunFactory, SessionFactory, UserFactory, build_chain
from tests.support.processes import wait_for


def _file(data: bytes, name: str = "export.json") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/json")


@pytest.fixture
def imports_dir(settings, tmp_path) -> Path:
    settings.ARBOR_IMPORT_DIR = str(tmp_path / "imports")
    return tmp_path / "imports"


@pytest.fixture
def enqueued(monkeypatch) -> list[str]:
    """The job ids the upload enqueued (no broker: the test runs the import itself)."""
    sent: list[str] = []
    monkeypatch.setattr(services, "_enqueue", lambda job_id: sent.append(str(job_id)))
    return sent


@pytest.mark.django_db
def test_upload_then_follow_the_job_to_its_report(api, user, data_dir, imports_dir, enqueued,
                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/imports", {"file": _file((data_dir / "sharegpt.json").read_bytes(), "sharegpt.json"),
                                             "format": "auto"})
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["status"] == "queued" and job["filename"] == "sharegpt.json" and job["percent"] == 0
    assert job["url"] == f"http://testserver/archive/jobs/{job['id']}/" and enqueued == [job["id"]]
    stored = ImportJob.objects.get(pk=job["id"])
    assert Path(stored.path).read_bytes() == (data_dir / "sharegpt.json").read_bytes()

    jobs.import_job_execute(job_id=job["id"])  # what the worker's task does
    done = api.get(f"/api/imports/{job['id']}").json()
    assert done["status"] == "succeeded" and done["percent"] == 100 and done["imported"] == 4 and done["skipped"] == 1
    assert done["report"]["imported"] == 4 and len(done["report"]["skipped_items"]) == 1
    assert done["finished_at"] and done["error"] == ""
    assert Session.objects.filter(owner=user).count() == 4
    listed = api.get("/api/imports").json()
    assert listed["count"] == 1 and listed["items"][0]["id"] == job["id"]


@pytest.mark.django_db
def test_each_export_format_and_an_arbor_export_imports_as_the_same_tree(api, user, imports_dir, enqueued,
                                                                          django_capture_on_commit_callbacks):
    session = SessionFactory(owner=user, title="Kyoto trip")
    root = RunFactory(session=session, turn=("hello", "hi there"))
    left = RunFactory(session=session, parent_run=root, turn=("left?", "left."))
    RunFactory(session=session, parent_run=root, turn=("right?", "right."))
    Session.objects.filter(pk=session.pk).update(active_run=left)
    expected = {"arbor": ("application/json", "kyoto-trip.json"), "jsonl": ("application/x-ndjson", "kyoto-trip.jsonl"),
                "chatgpt": ("application/json", "kyoto-trip-conversations.json"),
                "markdown": ("text/markdown; charset=utf-8", "kyoto-trip.md")}
    bodies = {}
    for fmt, (content_type, filename) in expected.items():
        response = api.get(f"/api/sessions/{session.pk}/export/{fmt}")
        assert response.status_code == 200 and response["Content-Type"] == content_type, fmt
        assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
        bodies[fmt] = b"".join(response.streaming_content)
    assert len(json.loads(bodies["arbor"])[0]["runs"]) == 3 and len(bodies["jsonl"].splitlines()) == 3
    assert b"left." in bodies["markdown"] and b"right." not in bodies["markdown"]  # the active branch
    other_branch = api.get(f"/api/sessions/{session.pk}/export/markdown", {"run_id": str(root.pk)})
    assert b"hi there" in b"".join(other_branch.streaming_content)

    with django_capture_on_commit_callbacks(execute=True):
        job_id = api.post("/api/imports", {"file": _file(bodies["arbor"]), "format": "arbor"}).json()["id"]
    jobs.import_job_execute(job_id=job_id)
    copy = Session.objects.exclude(pk=session.pk).get(owner=user)
    assert copy.title == "Kyoto trip" and tree_signature(copy) == tree_signature(session)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"format": "auto"}, "file"),
        ({"file": "not a file"}, "file"),
        ({"file": b"", "format": "auto"}, "empty"),
        ({"file": b"[]", "format": "pdf"}, "format"),
    ],
)
def test_bad_uploads_are_400_and_store_nothing(api, user, imports_dir, enqueued, data, fragment):
    if isinstance(data.get("file"), bytes):
        data = {**data, "file": _file(data["file"])}
    response = api.post("/api/imports", data)
    assert response.status_code == 400 and fragment in response.json()["detail"], response.content
    assert not ImportJob.objects.exists() and enqueued == []
    assert not imports_dir.exists() or not any(imports_dir.iterdir())


@pytest.mark.django_db
def test_an_upload_over_the_limit_is_400(api, user, imports_dir, enqueued, settings):
    settings.ARBOR_IMPORT_MAX_BYTES = 10
    response = api.post("/api/imports", {"file": _file(b"[" + b" " * 20 + b"]")})
    assert response.status_code == 400 and "larger than" in response.json()["detail"]
    assert not ImportJob.objects.exists() and enqueued == []


@pytest.mark.django_db
def test_other_users_jobs_sessions_and_runs_are_404(client, user, other_user, tmp_path):
    theirs = ImportJobFactory(owner=other_user, filename="t.json", path=str(tmp_path / "t"))
    their_session = SessionFactory(owner=other_user)
    their_run = build_chain(their_session, 1)[0]
    mine = SessionFactory(owner=user)
    other_mine = SessionFactory(owner=user)
    my_run = build_chain(mine, 1)[0]
    elsewhere = build_chain(other_mine, 1)[0]
    client.force_login(user)
    for url in (f"/api/imports/{theirs.pk}", f"/api/imports/{uuid.uuid4()}", "/api/imports/not-a-uuid"):
        response = client.get(url)
        assert response.status_code == 404 and response.json()["detail"], url
    assert client.get("/api/imports").json()["count"] == 0
    for fmt in ("arbor", "jsonl", "chatgpt", "markdown"):
        response = client.get(f"/api/sessions/{their_session.pk}/export/{fmt}")
        assert response.status_code == 404 and response.json()["detail"], fmt
    for run_id in (their_run.pk, elsewhere.pk, uuid.uuid4(), "nope"):
        response = client.get(f"/api/sessions/{mine.pk}/export/markdown", {"run_id": str(run_id)})
        assert response.status_code == 404 and response.json()["detail"], run_id
    Session.objects.filter(pk=mine.pk).update(deleted_at=my_run.created_at)
    assert client.get(f"/api/sessions/{mine.pk}/export/arbor").status_code == 404
    response = client.get(f"/api/sessions/{other_mine.pk}/export/pdf")
    assert response.status_code == 400 and "format" in response.json()["detail"]


@pytest.mark.django_db
def test_anonymous_callers_get_401(client, user, data_dir):
    session = SessionFactory(owner=user)
    job = ImportJobFactory(owner=user, filename="x.json", path="/nonexistent")
    calls = [client.post("/api/imports", {"file": _file(b"[]")}), client.get("/api/imports"),
             client.get(f"/api/imports/{job.pk}"), client.get(f"/api/sessions/{session.pk}/export/arbor")]
    for response in calls:
        assert response.status_code == 401 and response.json()["detail"]
    assert ImportJob.objects.count() == 1


@pytest.mark.django_db
def test_the_schema_lists_the_archive_operations(api):
    paths = api.get("/api/openapi.json").json()["paths"]
    assert set(paths["/api/imports"]) == {"get", "post"} and set(paths["/api/imports/{job_id}"]) == {"get"}
    export = paths["/api/sessions/{session_id}/export/{format}"]["get"]
    assert {"application/json", "application/x-ndjson", "text/markdown"} <= set(export["responses"]["200"]["content"])
    fmt = next(p for p in export["parameters"] if p["name"] == "format")
    assert fmt["schema"]["enum"] == ["arbor", "jsonl", "chatgpt", "markdown"]
    upload = paths["/api/imports"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_imports_an_upload_sent_with_a_bearer_token(client, data_dir, celery_worker):
    """Upload with a Bearer token → the Celery worker imports it → the job answers its report."""
    user = UserFactory()
    token = ApiToken.issue(user=user)[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    data = (data_dir / "chatgpt_conversations.json").read_bytes()
    response = client.post("/api/imports", {"file": _file(data, "conversations.json")}, **auth)
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    job = wait_for(lambda: (body := client.get(f"/api/imports/{job_id}", **auth).json())["status"] in
                   ("succeeded", "failed") and body, timeout=60, message="the worker to import the upload")
    assert job["status"] == "succeeded" and job["imported"] == 2 and job["skipped"] == 2
    reasons = " ".join(item["reason"] for item in job["report"]["skipped_items"])
    assert "the message graph has a cycle" in reasons and "no mapping" in reasons
    assert Session.objects.filter(owner=user, title="Branches and tools").exists()
