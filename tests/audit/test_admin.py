"""The admin: the sessions list's computed columns, filters and search; history read-only;
the auditor group reads everything and changes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, reverse

from conversations.models import Message, Role, RunStatus, Step, StepKind
from tests.support.factories import AgentFactory, RunFactory, SessionFactory, UserFactory

CHANGELIST = "admin:conversations_session_changelist"


def make_session(owner, *, title="s", statuses=(RunStatus.SUCCEEDED,), model="fake-model", tokens=(10, 5)):
    """A session whose runs are a root and children of it with the given statuses."""
    session = SessionFactory(owner=owner, title=title)
    root = RunFactory(session=session, model=model, prompt_tokens=tokens[0], completion_tokens=tokens[1],
                      status=statuses[0])
    for status in statuses[1:]:
        RunFactory(session=session, parent_run=root, model=model, prompt_tokens=tokens[0],
                   completion_tokens=tokens[1], status=status)
    return session


@pytest.mark.django_db
def test_sessions_list_columns_are_computed_correctly(client, superuser, user, settings):
    """runs, branches (leaf runs), tokens, cost (from ARBOR_MODEL_PRICES) and status counts."""
    settings.ARBOR_MODEL_PRICES = {"priced": {"prompt": 2.0, "completion": 10.0}}
    s = make_session(user, title="alpha", model="priced",
                     statuses=(RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED),
                     tokens=(1000, 100))
    client.force_login(superuser)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    row = next(r for r in response.context["cl"].result_list if r.pk == s.pk)
    assert row.run_count == 4
    assert row.branch_count == 3  # three children of one root: three leaves
    assert row.token_total == 4 * 1100
    assert row.cost == pytest.approx(4 * (1000 * 2.0 + 100 * 10.0) / 1_000_000)
    assert (row.n_succeeded, row.n_failed, row.n_cancelled, row.n_running, row.n_queued) == (2, 1, 1, 0, 0)
    html = response.content.decode()
    assert "alpha" in html and "0.0120" in html
    assert row.last_activity >= s.created_at


@pytest.mark.django_db
def test_sessions_list_query_count_does_not_grow_with_sessions(client, superuser, user):
    """The list's columns come from its one query: the number of queries is the same for 2
    sessions as for 20 (no N+1)."""
    client.force_login(superuser)
    for i in range(2):
        make_session(user, title=f"first {i}", statuses=(RunStatus.SUCCEEDED, RunStatus.FAILED))
    with CaptureQueriesContext(connection) as few:
        assert client.get(reverse(CHANGELIST)).status_code == 200
    for i in range(18):
        make_session(UserFactory(), title=f"more {i}", statuses=(RunStatus.SUCCEEDED, RunStatus.QUEUED))
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse(CHANGELIST))
    assert response.context["cl"].result_count == 20
    assert len(many.captured_queries) == len(few.captured_queries), [q["sql"][:200] for q in many.captured_queries]


@pytest.mark.django_db
def test_sessions_list_filters_by_user_model_status_and_date(client, superuser, user, other_user):
    """Each filter keeps exactly the matching sessions, and their counts stay right (no join
    multiplying the aggregates)."""
    mine = make_session(user, title="mine", model="m-a", statuses=(RunStatus.SUCCEEDED, RunStatus.FAILED))
    theirs = make_session(other_user, title="theirs", model="m-b", statuses=(RunStatus.SUCCEEDED,))
    client.force_login(superuser)
    url = reverse(CHANGELIST)

    def shown(**params):
        cl = client.get(url, params).context["cl"]
        return {s.pk: s for s in cl.result_list}

    assert set(shown(owner__id__exact=user.pk)) == {mine.pk}
    assert set(shown(model="m-b")) == {theirs.pk}
    only_failed = shown(run_status="failed")
    assert set(only_failed) == {mine.pk}
    assert only_failed[mine.pk].run_count == 2  # the filter did not cut the counted runs
    since = (mine.created_at - timedelta(minutes=5)).isoformat()
    assert set(shown(**{"created_at__gte": since})) == {mine.pk, theirs.pk}
    assert set(shown(**{"created_at__lt": "2000-01-01T00:00:00+00:00"})) == set()


@pytest.mark.django_db
def test_sessions_list_searches_titles_and_message_text(client, superuser, user):
    """Search finds a session by its title and by the text of any of its messages, once."""
    a = make_session(user, title="Budget planning")
    b = SessionFactory(owner=user, title="Untitled")
    run = RunFactory(session=b, turn=("what about the quokka population?", "it is stable"))
    RunFactory(session=b, parent_run=run, turn=("more quokka facts", "sure"))
    client.force_login(superuser)
    cl = client.get(reverse(CHANGELIST), {"q": "budget"}).context["cl"]
    assert [s.pk for s in cl.result_list] == [a.pk]
    cl = client.get(reverse(CHANGELIST), {"q": "quokka"}).context["cl"]
    assert [s.pk for s in cl.result_list] == [b.pk]
    assert cl.result_list[0].run_count == 2


@pytest.mark.django_db
def test_runs_messages_steps_agents_and_compactions_are_registered_and_render(client, superuser, other_tree):
    """Every model of the audit surface has a working changelist and object page."""
    run = other_tree["a"]
    step = Step.objects.create(run=run, kind=StepKind.LLM_CALL, name="fake-model", request={"model": "fake-model"})
    message = Message.objects.filter(run=run).first()
    agent = AgentFactory(name="helper", owner=other_tree["session"].owner)
    client.force_login(superuser)
    for name, pk in [("conversations_session", other_tree["session"].pk), ("conversations_run", run.pk),
                     ("conversations_message", message.pk), ("conversations_step", step.pk),
                     ("memory_agent", agent.pk)]:
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
        assert client.get(reverse(f"admin:{name}_change", args=[pk])).status_code == 200, name
    assert client.get(reverse("admin:memory_compaction_changelist")).status_code == 200
    response = client.get(reverse("admin:conversations_run_changelist"), {"q": '"branch a"'})
    assert [r.pk for r in response.context["cl"].result_list] == [run.pk]


@pytest.mark.django_db
def test_history_is_read_only_in_the_admin_even_for_superusers(client, superuser, other_tree):
    """Runs, messages and steps cannot be added, edited or deleted through the admin."""
    run = other_tree["a"]
    client.force_login(superuser)
    assert client.get(reverse("admin:conversations_run_add")).status_code == 403
    assert client.get(reverse("admin:conversations_run_delete", args=[run.pk])).status_code == 403
    response = client.post(reverse("admin:conversations_run_change", args=[run.pk]), {"status": "failed"})
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


def _admin_model_urls():
    """(changelist, add) URL names of every model registered in the admin."""
    for model in admin.site._registry:
        meta = model._meta
        yield model, f"admin:{meta.app_label}_{meta.model_name}"


@pytest.mark.django_db
def test_auditor_group_has_every_view_permission_and_nothing_else():
    """The auditor group holds exactly the view permissions of every model."""
    group = Group.objects.get(name="auditor")
    codenames = set(group.permissions.values_list("content_type__app_label", "codename"))
    all_view = set(
        Permission.objects.filter(codename__startswith="view_").values_list("content_type__app_label", "codename")
    )
    assert codenames == all_view
    assert ("conversations", "view_session") in codenames and ("audit", "view_auditlog") in codenames
    assert not {c for _, c in codenames if not c.startswith("view_")}


@pytest.mark.django_db
def test_auditor_reads_every_admin_page_and_changes_nothing(client, auditor, other_tree, user):
    """An auditor gets 200 on every changelist and object page, 403 on every add, change (POST)
    and delete; the run audit page and the audit log export are open to them."""
    from audit.log import record

    run = other_tree["a"]
    Step.objects.create(run=run, kind=StepKind.CONTEXT, name="build context")
    AgentFactory(name="helper", owner=user)
    record("session.create", target=other_tree["session"])
    client.force_login(auditor)
    assert client.get(reverse("admin:index")).status_code == 200
    checked = 0
    for model, base in _admin_model_urls():
        assert client.get(reverse(f"{base}_changelist")).status_code == 200, base
        assert client.get(reverse(f"{base}_add")).status_code == 403, base
        obj = model._default_manager.first()
        if obj is None:
            continue
        checked += 1
        change = reverse(f"{base}_change", args=[obj.pk])
        assert client.get(change).status_code == 200, base
        assert client.post(change, {}).status_code == 403, base
        assert client.get(reverse(f"{base}_delete", args=[obj.pk])).status_code == 403, base
        assert client.post(reverse(f"{base}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403, base
        assert model._default_manager.filter(pk=obj.pk).exists(), base
    assert checked >= 8
    assert client.get(reverse("audit:run", args=[run.pk])).status_code == 200
    assert client.get(reverse("audit:log_export"), {"format": "jsonl"}).status_code == 200


@pytest.mark.django_db
def test_staff_without_view_permission_cannot_read(client, other_tree):
    """Being staff is not enough: without the view permissions, admin pages are 403 and audit pages 404."""
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.get(reverse("audit:run", args=[other_tree["a"].pk])).status_code == 404


@pytest.mark.django_db
def test_admin_message_roles_and_unknown_ids(client, superuser, other_tree):
    """A malformed or unknown id is a redirect with a message, never a server error."""
    client.force_login(superuser)
    response = client.get(reverse("admin:conversations_run_change", args=[uuid.uuid4()]))
    assert response.status_code == 302
    response = client.get(reverse("admin:conversations_message_changelist"), {"role__exact": Role.ASSISTANT})
    assert all(m.role == Role.ASSISTANT for m in response.context["cl"].result_list)
    assert reverse("audit:run", args=[other_tree["a"].pk]).endswith(f"{other_tree['a'].pk}/")
    assert not isinstance(admin.site.urls, (URLPattern, URLResolver))
