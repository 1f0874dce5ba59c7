"""The JSON API of the archive (a django-ninja router, mounted by :mod:`config.api`): upload an
export (multipart) to import it in a worker, follow the import job to its report, and export a
session in each format.

The same code as the pages (:mod:`archive.views`): :func:`archive.services.import_job_create`
stores the upload and enqueues the import, :mod:`archive.selectors` looks jobs up,
:func:`archive.exporters.export_for` exports. Another user's jobs, sessions and runs are 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from django.http import StreamingHttpResponse
from django.urls import reverse
from ninja import Field, File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from ninja.pagination import paginate

from core.api_kit import MAX_PAGE_SIZE, Pages, answers

from . import exporters, selectors, services
from .models import ImportJob

router = Router(tags=["archive"])

ImportFormat = Literal[services.FORMAT_CHOICES]
ExportFormat = Literal[tuple(exporters.EXPORT_FORMATS)]


class ImportJobOut(Schema):
    id: uuid.UUID
    filename: str
    format: str
    status: str = Field(description="queued, running, succeeded or failed.")
    size_bytes: int
    bytes_read: int
    percent: int = Field(description="Progress 0–100 (100 once succeeded).")
    imported: int = Field(description="Conversations imported (each one a new session).")
    skipped: int
    error: str = Field(description="Why the job failed, else empty.")
    report: dict = Field(description="When done: counts, the imported conversations (the first 200, with their "
                                     "session ids), every skipped one with its reason (the first 1,000) and the "
                                     "problems of the file itself.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str = Field(description="The job's page.")

    @staticmethod
    def resolve_url(obj: ImportJob, context) -> str:
        return context["request"].build_absolute_uri(reverse("archive:job", kwargs={"job_id": obj.pk}))


UPLOAD_DOC = {"requestBody": {"content": {"multipart/form-data": {"schema": {"properties": {
    "file": {"minLength": 1}}}}}}}  # an empty file is refused


@router.post("/imports", response=answers({202: ImportJobOut}, 400, 413), openapi_extra=UPLOAD_DOC)
def upload_import(request, file: File[UploadedFile], format: Form[ImportFormat] = "auto"):
    """Upload an export (multipart form: ``file``, ``format`` — auto detects it) to import: the file is
    stored and a worker imports it. Answers the job at once (``queued``); poll ``GET /api/imports/{id}``
    until ``succeeded`` or ``failed``. 400: no file, an empty one, a file over ARBOR_IMPORT_MAX_BYTES."""
    job = services.import_job_create(owner=request.auth, upload=file, format=format)
    return Status(202, job)


@router.get("/imports", response=answers({200: list[ImportJobOut]}, 400, 404))
@paginate(Pages, page_size=20, max_page_size=MAX_PAGE_SIZE)
def list_imports(request):
    """Your imports, newest first."""
    return selectors.recent_import_jobs(request.auth)


@router.get("/imports/{job_id}", response=answers({200: ImportJobOut}, 404))
def get_import(request, job_id: str):
    """An import's status and progress; its report once it is done."""
    return selectors.get_import_job_for(request.auth, job_id)


EXPORT_DOC = {"responses": {200: {
    "description": "The file (Content-Disposition: attachment): arbor and chatgpt are JSON, jsonl is JSON Lines "
                   "(one run per line), markdown is one branch as text",
    "content": {"application/json": {"schema": {}}, "application/x-ndjson": {"schema": {"type": "string"}},
                "text/markdown": {"schema": {"type": "string"}}},
}}}


@router.get("/sessions/{session_id}/export/{format}", response=answers({200: None}, 400, 404),
            openapi_extra=EXPORT_DOC)
def export_session(request, session_id: str, format: ExportFormat, run_id: str | None = None):
    """Download a session: ``arbor`` (the whole tree; import it again for the same tree), ``jsonl``
    (``arbor.run/1``, one finished run per line), ``chatgpt`` (conversations.json) or ``markdown``
    (one branch: ``run_id``'s, default the active one). 404: not your session, or ``run_id`` not in it."""
    export = exporters.export_for(request.auth, session_id, format, run_id or None)
    response = StreamingHttpResponse(export.chunks, content_type=export.content_type)
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    return response
