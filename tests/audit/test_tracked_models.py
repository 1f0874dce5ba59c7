"""Models registered with ``audit.log.track_changes`` by their own apps (audit imports no app)."""

from __future__ import annotations

import pytest

from archive.models import ImportJob
from audit.log import operation
from audit.models import AuditLog
from tests.support.factories import SessionFactory


def last(action: str) -> AuditLog:
    return AuditLog.objects.filter(action=action).order_by("-id").first()


@pytest.mark.django_db
def test_an_import_job_is_recorded_as_archive_import_with_its_file(user):
    job = ImportJob.objects.create(owner=user, filename="chats.json", path="/tmp/x", format="chatgpt", size_bytes=12)
    row = last("archive.import")
    assert (row.target_type, row.target_id) == ("archive.importjob", str(job.pk))
    assert row.details == {"filename": "chats.json", "format": "chatgpt", "size_bytes": 12, "owner_id": user.pk}
    pk = str(job.pk)
    job.status = "running"
    job.save()
    job.delete()
    assert AuditLog.objects.filter(target_id=pk).count() == 1  # changes and deletes are not audited


@pytest.mark.django_db
def test_a_session_purge_is_recorded_even_inside_an_audited_operation(user):
    """Inside an operation, a session's create is quiet but its hard delete is still recorded."""
    with operation("test.op"):
        session = SessionFactory(owner=user)
        pk, owner_id = session.pk, session.owner_id
        session.delete()
    assert not AuditLog.objects.filter(action="session.create", target_id=str(pk)).exists()
    row = last("session.purge")
    assert (row.target_id, row.details) == (str(pk), {"owner_id": owner_id})


@pytest.mark.django_db
def test_a_full_save_of_a_session_is_a_change_and_bookkeeping_fields_are_not(user):
    session = SessionFactory(owner=user, title="t")
    session.save()
    assert last("session.change").details == {"title": "t", "deleted": False}
    user.save(update_fields=["last_login"])
    assert not AuditLog.objects.filter(action="user.change").exists()
