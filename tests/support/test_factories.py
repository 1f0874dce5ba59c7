"""The shared factories make rows the app reads back as its own: owner-consistent trees, lookups
through the selectors succeed for the owner and answer NotFound for another user."""

from __future__ import annotations

import pytest

from archive.selectors import get_import_job_for
from branches.selectors import get_label_for, share_from_token, share_token
from comparisons.selectors import get_comparison_for
from connections.selectors import get_connection_for
from core.errors import NotFound
from memory.selectors import get_agent_for
from tests.support.factories import (
    AgentFactory,
    BranchLabelFactory,
    BranchShareFactory,
    ComparisonFactory,
    ConnectionFactory,
    ImportJobFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_each_factory_makes_a_row_its_owner_can_look_up_and_no_one_else(user):
    stranger = UserFactory()
    agent, connection = AgentFactory(owner=user), ConnectionFactory(owner=user)
    comparison, job = ComparisonFactory(owner=user), ImportJobFactory(owner=user)
    assert get_agent_for(user, agent.pk) == agent
    assert get_connection_for(user, connection.pk) == connection
    assert get_comparison_for(user, comparison.pk) == comparison
    assert get_import_job_for(user, job.pk) == job
    assert comparison.session.owner == user and comparison.branch_point.session == comparison.session
    for lookup, pk in ((get_agent_for, agent.pk), (get_connection_for, connection.pk),
                       (get_comparison_for, comparison.pk), (get_import_job_for, job.pk)):
        with pytest.raises(NotFound):
            lookup(stranger, pk)


def test_a_label_and_a_share_stand_on_a_run_of_their_session(user):
    label = BranchLabelFactory(session__owner=user)
    assert label.run.session == label.session
    assert get_label_for(user, label.session, label.pk) == label
    share = BranchShareFactory(session__owner=user)
    assert share_from_token(share_token(share)) == share
