"""The append-only audit log: what is recorded, with whom, from where, and that it cannot change."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from accounts.models import ApiToken
from audit.models import AppendOnlyError, AuditLog
from conversations import services
from conversations.models import Run, RunStatus, Session
from core.errors import Conflict
from tests.support.factories import AgentFactory, RunFactory, SessionFactory

UA = "Mozilla/5.0 (audit-test)"


def actions() -> list[str]:
    """Actions in order, without the fixtures' user.create and auth.login (force_login) rows."""
    rows = AuditLog.objects.exclude(action__in=["user.create", "auth.login"]).order_by("id")
    return list(rows.values_list("action", flat=True))


def last(action: str) -> AuditLog:
    return AuditLog.objects.filter(action=action).order_by("-id").first()


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    AuditLog.objects.all()  # (nothing to clean: each test runs in its own transaction)
    return client


@pytest.mark.django_db
def test_session_lifecycle_through_the_pages_is_recorded_with_actor_ip_and_user_agent(browser, user):
    """Creating, renaming, deleting and restoring a session from the pages each write one row with
    the actor, the client IP, the user agent, the method and path, and the target session."""
    browser.post(reverse("conversations:session_new"), {"title": "First"}, HTTP_USER_AGENT=UA,
                 REMOTE_ADDR="203.0.113.7")
    session = Session.objects.get(owner=user)
    row = last("session.create")
    assert row is not None
    assert (row.actor_id, row.actor_username) == (user.pk, user.username)
    assert (row.target_type, row.target_id) == ("conversations.session", str(session.pk))
    assert row.ip == "203.0.113.7"
    assert row.user_agent == UA
    assert (row.method, row.path) == ("POST", reverse("conversations:session_new"))
    assert row.details["title"] == "First"

    browser.post(reverse("conversations:session_rename", args=[session.pk]), {"title": "Renamed"})
    assert last("session.rename").details["title"] == "Renamed"
    browser.post(reverse("conversations:session_delete", args=[session.pk]))
    assert last("session.delete").target_id == str(session.pk)
    browser.post(reverse("conversations:session_restore", args=[session.pk]))
    assert last("session.restore").target_id == str(session.pk)
    assert actions() == ["session.create", "session.rename", "session.delete", "session.restore"]


@pytest.mark.django_db
def test_run_actions_are_one_row_each_named_for_what_the_user_did(user):
    """start, regenerate, edit, cancel, fork and active-branch changes each write exactly one row
    (the new run inside a regenerate is not also logged as a start), with the source ids."""
    session = services.session_create(owner=user, title="t")
    AuditLog.objects.all()
    first = services.run_start(session=session, input="hello")
    Run.objects.filter(pk=first.pk).update(status=RunStatus.SUCCEEDED)
    first.refresh_from_db()
    regen = services.run_regenerate(run=first, session=session)
    edited = services.run_edit(run=first, input="hello again", session=session)
    services.run_cancel(run=edited)
    services.session_set_active(session=session, run=first)
    fork = services.session_fork(run=first, owner=user)

    assert actions() == ["session.create", "run.start", "run.regenerate", "run.edit", "run.cancel",
                         "session.set_active", "run.fork"]
    assert last("run.start").target_id == str(first.pk)
    assert last("run.regenerate").target_id == str(regen.pk)
    assert last("run.regenerate").details["run_id"] == str(first.pk)
    assert last("run.edit").target_id == str(edited.pk)
    assert last("run.edit").details["run_id"] == str(first.pk)
    assert last("run.cancel").target_id == str(edited.pk)
    assert last("session.set_active").details["session_id"] == str(session.pk)
    assert last("run.fork").target_id == str(fork.pk)
    assert last("run.fork").details["run_id"] == str(first.pk)
    # Outside a request the actor is the system: nobody is attributed an action they did not do.
    assert last("run.start").actor_id is None


@pytest.mark.django_db
def test_a_failed_action_writes_no_row(user):
    """An action that raises (here: cancelling a finished run) changes nothing and logs nothing."""
    run = RunFactory(session=SessionFactory(owner=user))
    before = AuditLog.objects.count()
    with pytest.raises(Conflict):
        services.run_cancel(run=run)
    assert AuditLog.objects.count() == before


@pytest.mark.django_db
def test_api_actions_are_attributed_to_the_bearer_tokens_user(client, user, other_user):
    """Through the API with a Bearer token, the token's user is the actor."""
    token = ApiToken.issue(user=user)[1]
    response = client.post("/api/sessions", data={"title": "via api"}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_USER_AGENT="curl/8")
    assert response.status_code == 201
    row = last("session.create")
    assert row.actor_id == user.pk and row.user_agent == "curl/8"
    response = client.post(f"/api/sessions/{response.json()['id']}/runs", data={"input": "hi"},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 202
    assert last("run.start").actor_id == user.pk
    assert last("run.start").target_id == response.json()["run_id"]


@pytest.mark.django_db
def test_rewind_from_the_page_is_recorded(browser, user):
    """"Continue from here" changes the active branch: recorded as session.rewind with the run."""
    session = SessionFactory(owner=user)
    root = RunFactory(session=session)
    RunFactory(session=session, parent_run=root)
    browser.post(reverse("conversations:run_rewind", args=[session.pk, root.pk]))
    row = last("session.rewind")
    assert row is not None and row.target_id == str(root.pk) and row.actor_id == user.pk
    assert row.details["session_id"] == str(session.pk)


@pytest.mark.django_db
def test_logins_logouts_and_failed_logins_are_recorded(client, user):
    """A failed login records the username tried (never the password); login and logout record the user."""
    client.post(reverse("login"), {"username": user.username, "password": "wrong-password"},
                REMOTE_ADDR="198.51.100.4")
    failed = last("auth.login_failed")
    assert failed.details == {"username": user.username}
    assert failed.ip == "198.51.100.4" and failed.actor_id is None
    assert "wrong-password" not in json.dumps(failed.as_dict())

    response = client.post(reverse("login"), {"username": user.username, "password": "pw-123456"})
    assert response.status_code == 302
    assert last("auth.login").actor_id == user.pk
    client.post(reverse("logout"))
    assert last("auth.logout").actor_id == user.pk


@pytest.mark.django_db
def test_admin_changes_are_recorded_from_the_admin_log(client, superuser, other_user):
    """An admin edit writes admin.change (with Django's change message) besides the model's own row."""
    agent = AgentFactory(owner=other_user, name="helper", model="m1")
    client.force_login(superuser)
    url = reverse("admin:memory_agent_change", args=[agent.pk])
    response = client.post(url, {
        "owner": other_user.pk, "name": "helper2", "model": "m2", "system_prompt": "", "params": "{}",
        "memory_id": "default", "memory_window_size": "", "context_window": "", "reserved_output_tokens": 512,
        "compaction": "{}", "tools": "[]", "created_at_0": "2026-01-01", "created_at_1": "00:00:00",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    row = last("admin.change")
    assert row.actor_id == superuser.pk
    assert (row.target_type, row.target_id) == ("memory.agent", str(agent.pk))
    assert "Name" in row.details["message"] or "name" in row.details["message"].lower()
    assert last("agent.change").target_id == str(agent.pk)


@pytest.mark.django_db
def test_api_tokens_created_and_deleted_are_recorded(user):
    """Issuing and revoking an API token are security-relevant changes: both are logged."""
    row, _ = ApiToken.issue(user=user, name="ci")
    pk = row.pk
    assert last("api_token.create").target_id == str(pk)
    row.delete()
    assert last("api_token.delete").target_id == str(pk)


@pytest.mark.django_db
def test_client_ip_honours_trusted_proxies_only_when_configured(browser, settings):
    """Behind n trusted proxies the IP is the n-th X-Forwarded-For entry from the right; without
    the setting a forged header is ignored."""
    url = reverse("conversations:session_new")
    browser.post(url, {"title": "a"}, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert last("session.create").ip == "10.0.0.1"
    settings.ARBOR_TRUSTED_PROXIES = 1
    browser.post(url, {"title": "b"}, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.9")
    assert last("session.create").ip == "192.0.2.9"


@pytest.mark.django_db
def test_rows_cannot_be_changed_or_deleted_through_the_orm(user):
    """save() of an existing row, delete(), queryset update() and delete() all refuse."""
    services.session_create(owner=user, title="x")
    row = last("session.create")
    row.action = "forged"
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.delete()
    with pytest.raises(AppendOnlyError):
        AuditLog.objects.filter(pk=row.pk).update(action="forged")
    with pytest.raises(AppendOnlyError):
        AuditLog.objects.filter(pk=row.pk).delete()
    assert AuditLog.objects.get(pk=row.pk).action == "session.create"


@pytest.mark.django_db
def test_database_trigger_rejects_update(user):
    """Raw SQL that bypasses the ORM still cannot UPDATE an audit row (trigger on both databases)."""
    services.session_create(owner=user, title="x")
    row = last("session.create")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditlog SET action = %s WHERE id = %s", ["forged", row.pk])
    assert AuditLog.objects.get(pk=row.pk).action == "session.create"


@pytest.mark.django_db
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the DELETE trigger is PostgreSQL's (SQLite's flush uses DELETE)",
)
def test_postgresql_trigger_rejects_delete(user):
    """On PostgreSQL raw SQL cannot DELETE audit rows either."""
    services.session_create(owner=user, title="x")
    row = last("session.create")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditlog WHERE id = %s", [row.pk])
    assert AuditLog.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db
def test_postgresql_trigger_exists_when_on_postgresql():
    """The trigger is installed by the migration on the database in use."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_auditlog'::regclass AND NOT tgisinternal"
            )
            assert [r[0] for r in cursor.fetchall()] == ["audit_auditlog_append_only"]
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_auditlog'")
            assert [r[0] for r in cursor.fetchall()] == ["audit_auditlog_no_update"]


@pytest.mark.django_db
def test_export_as_csv_and_jsonl_with_admin_filters(client, superuser, user, other_user):
    """The export view streams the rows matching the admin's filters, oldest first, in CSV (header
    row, details as JSON) or JSONL; the export itself is recorded."""
    services.session_create(owner=user, title="one")
    services.session_create(owner=other_user, title="two")
    session = services.session_create(owner=user, title="three")
    services.session_rename(session=session, title="three, renamed")
    client.force_login(superuser)
    url = reverse("audit:log_export")

    response = client.get(url, {"format": "csv", "action__exact": "session.create"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [json.loads(r["details"])["title"] for r in rows] == ["one", "two", "three"]
    assert {r["action"] for r in rows} == {"session.create"}

    response = client.get(url, {"format": "jsonl", "q": "renamed"})
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [(x["action"], x["details"]["title"]) for x in lines] == [("session.rename", "three, renamed")]
    assert last("audit.export").actor_id == superuser.pk
    assert client.get(url, {"format": "xml"}).status_code == 400


@pytest.mark.django_db
def test_export_admin_actions_and_changelist_filters(client, superuser, user):
    """The admin list filters by action and offers CSV/JSONL export of the selected rows."""
    services.session_create(owner=user, title="a")
    services.session_create(owner=user, title="b")
    client.force_login(superuser)
    changelist = reverse("admin:audit_auditlog_changelist")
    response = client.get(changelist, {"action__exact": "session.create"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 2
    assert b"Export all matching as CSV" in response.content
    ids = list(AuditLog.objects.filter(action="session.create").values_list("pk", flat=True))
    response = client.post(changelist, {"action": "export_jsonl", "_selected_action": ids})
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(ids)


@pytest.mark.django_db
def test_nobody_can_add_change_or_delete_audit_rows_in_the_admin(client, superuser, user):
    """Even a superuser only reads the audit log in the admin."""
    services.session_create(owner=user, title="a")
    row = last("session.create")
    client.force_login(superuser)
    assert client.get(reverse("admin:audit_auditlog_add")).status_code == 403
    assert client.get(reverse("admin:audit_auditlog_delete", args=[row.pk])).status_code == 403
    response = client.post(reverse("admin:audit_auditlog_change", args=[row.pk]), {"action": "forged"})
    assert response.status_code == 403
    assert AuditLog.objects.get(pk=row.pk).action == "session.create"


@pytest.mark.django_db
def test_staff_views_of_other_users_data_are_recorded(client, superuser, other_tree):
    """Opening another user's session or run in the admin, or a run's audit page, is recorded
    with the owner; listing sessions is recorded as staff.list."""
    client.force_login(superuser)
    session, run = other_tree["session"], other_tree["a"]
    assert client.get(reverse("admin:conversations_session_change", args=[session.pk])).status_code == 200
    row = last("staff.view")
    assert (row.target_type, row.target_id, row.actor_id) == ("conversations.session", str(session.pk), superuser.pk)
    assert row.details["owner_id"] == session.owner_id
    assert client.get(reverse("admin:conversations_run_change", args=[run.pk])).status_code == 200
    assert last("staff.view").target_id == str(run.pk)
    assert client.get(reverse("audit:run", args=[run.pk])).status_code == 200
    assert last("staff.view").details["page"] == "audit.run"
    assert client.get(reverse("admin:conversations_session_changelist")).status_code == 200
    assert last("staff.list").target_type == "conversations.session"


@pytest.mark.django_db
def test_staff_viewing_their_own_session_is_not_a_view_of_others_data(client, superuser):
    """Only other users' data counts: a staff member's own session page writes no staff.view."""
    session = SessionFactory(owner=superuser)
    client.force_login(superuser)
    client.get(reverse("admin:conversations_session_change", args=[session.pk]))
    assert not AuditLog.objects.filter(action="staff.view").exists()


@pytest.mark.django_db
def test_audit_page_and_export_are_404_for_non_staff(client, user, other_tree):
    """Ordinary users cannot reach audit pages (404, as if they did not exist)."""
    client.force_login(user)
    assert client.get(reverse("audit:run", args=[other_tree["a"].pk])).status_code == 404
    assert client.get(reverse("audit:log_export")).status_code == 404


@pytest.mark.django_db
def test_deleting_a_user_keeps_their_audit_rows(browser, user):
    """Audit rows outlive their actor: deleting the user neither fails nor touches the rows."""
    browser.post(reverse("conversations:session_new"), {"title": "a"})
    row = last("session.create")
    assert row.actor_id == user.pk
    Session.objects.filter(owner=user).delete()
    user.delete()
    row = AuditLog.objects.get(pk=row.pk)
    assert (row.actor_username, row.action) == (user.username, "session.create")
    assert last("user.delete").target_id == str(row.actor_id)
