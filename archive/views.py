"""Pages of the archive app: upload an archive (import runs in a worker, the page polls its
progress and shows the report) and download a session as Arbor JSON, JSON Lines, ChatGPT JSON or
Markdown. Objects are looked up with ownership (:mod:`archive.selectors`,
:func:`archive.exporters.export_for`, the same as the JSON API's :mod:`archive.api`): another
user's jobs and sessions are 404 (a NotFound becomes the site's 404 page in
:class:`core.middleware.NotFoundMiddleware`).
"""

from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.errors import ArborError, InvalidInput

from . import exporters, selectors, services


def _context(request, **extra) -> dict:
    jobs = selectors.recent_import_jobs(request.user)[:20]
    return {"jobs": jobs, "formats": services.FORMAT_CHOICES, **extra}


@require_GET
def import_page(request: HttpRequest) -> HttpResponse:
    """The upload form and the user's recent imports."""
    return render(request, "archive/import.html", _context(request))


@require_POST
def import_upload(request: HttpRequest) -> HttpResponse:
    """Store the uploaded file and enqueue its import: 400 with a message for a bad upload."""
    try:
        job = services.import_job_create(owner=request.user, upload=request.FILES.get("file"),
                                         format=request.POST.get("format", "auto"))
    except ArborError as exc:
        if request.htmx:
            return render(request, "archive/import.html#upload_error", {"error": exc.message}, status=exc.status)
        return render(request, "archive/import.html", _context(request, error=exc.message), status=exc.status)
    if request.htmx and not request.htmx.boosted:
        return render(request, "archive/job.html#progress", {"job": job})
    return redirect("archive:job", job_id=job.pk)


@require_GET
def job_detail(request: HttpRequest, job_id: UUID) -> HttpResponse:
    """An import's progress (polled by htmx while it runs) and, when it is done, its report."""
    job = selectors.get_import_job_for(request.user, job_id)
    if request.htmx and not request.htmx.boosted:
        return render(request, "archive/job.html#progress", {"job": job})
    return render(request, "archive/job.html", {"job": job})


@require_GET
def session_export(request: HttpRequest, session_id: UUID, format: str) -> HttpResponse:
    """Download a session: ``format`` arbor, jsonl, chatgpt or markdown (``?run=`` picks the branch).
    Another user's (or an unknown) session or run is a NotFound: the site's 404 page."""
    try:
        export = exporters.export_for(request.user, session_id, format, request.GET.get("run") or None)
    except InvalidInput as exc:
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(export.chunks, content_type=export.content_type)
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    return response


def export_links(session) -> list[tuple[str, str]]:
    """``(label, url)`` of every export of ``session`` (for pages that offer downloads)."""
    return [(label, reverse("archive:session_export", kwargs={"session_id": session.pk, "format": fmt}))
            for fmt, label in (("arbor", "Arbor JSON"), ("jsonl", "JSON Lines"), ("chatgpt", "ChatGPT JSON"),
                               ("markdown", "Markdown"))]
