"""Reads of the archive app with ownership: the one place that decides which import jobs a user
may see (pages and the JSON API). Raises :class:`core.errors.NotFound`, never Http404."""

from __future__ import annotations

from core.errors import NotFound
from core.ids import parse_id

from .models import ImportJob


def get_import_job_for(user, job_id) -> ImportJob:
    """``user``'s import job; NotFound for another user's, an unknown or a malformed id."""
    pk = parse_id(job_id, "import")
    job = ImportJob.objects.filter(pk=pk, owner=user).first()
    if job is None:
        raise NotFound("No such import.")
    return job


def recent_import_jobs(user):
    """``user``'s import jobs, newest first (a QuerySet)."""
    return ImportJob.objects.filter(owner=user).order_by("-created_at")
