"""Fixtures for the audit, accounts and safety tests."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache

from tests.support.factories import RunFactory, SessionFactory, UserFactory

MARKER = "zq-other-users-secret-7731"  # appears only in the other user's data


@pytest.fixture
def superuser(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def auditor(db):
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name="auditor"))
    return user


@pytest.fixture
def other_tree(other_user):
    """The other user's session: a root run with two children (siblings), one with a child."""
    session = SessionFactory(owner=other_user, title=f"Plans {MARKER}")
    root = RunFactory(session=session, turn=(f"root question {MARKER}", f"root answer {MARKER}"))
    a = RunFactory(session=session, parent_run=root, turn=("branch a", "answer a"))
    b = RunFactory(session=session, parent_run=root, turn=("branch b", "answer b"))
    leaf = RunFactory(session=session, parent_run=a, turn=("deeper", "deeper answer"))
    session.active_run = leaf
    session.save(update_fields=["active_run"])
    return {"session": session, "root": root, "a": a, "b": b, "leaf": leaf}


@pytest.fixture
def clean_rate_cache():
    """Rate-limit counters live in the shared cache: start each rate-limit test from zero."""
    cache.clear()
    yield
    cache.clear()
