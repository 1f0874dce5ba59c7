"""core.outage: work retried while the database is unreachable, periodic passes skipped while a
backing service is down (the engine's side of a PostgreSQL outage; the whole outage is the chaos
suite's 60 s scenario)."""

from __future__ import annotations

import logging

import django.db
import pytest
import redis.exceptions
from django.db import connection, transaction

from core import outage


def _flaky(failures: int, error: type[BaseException] = django.db.OperationalError):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise error("connection refused")
        return "written"

    return fn, calls


@pytest.mark.django_db(transaction=True)
def test_work_is_tried_again_until_the_database_answers(caplog):
    fn, calls = _flaky(2)
    with caplog.at_level(logging.INFO, logger="core.outage"):
        assert outage.until_database_answers(fn, what="run x: final state", within=30) == "written"
    assert len(calls) == 3
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    assert "run x: final state: database unavailable (connection refused)" in caplog.records[0].getMessage()
    assert "answered again after 2 tries" in caplog.records[1].getMessage()


@pytest.mark.django_db(transaction=True)
def test_the_wait_is_bounded_and_then_the_error_is_raised():
    fn, calls = _flaky(1000, django.db.InterfaceError)
    with pytest.raises(django.db.InterfaceError):
        outage.until_database_answers(fn, what="w", within=1.2)
    assert 2 <= len(calls) <= 4  # tries at 0, 0.5 and 1.5 s at most


@pytest.mark.django_db(transaction=True)
def test_nothing_is_retried_inside_an_outer_transaction_or_for_other_errors():
    fn, calls = _flaky(1)
    with transaction.atomic(), pytest.raises(django.db.OperationalError):
        outage.until_database_answers(fn, what="w", within=30)
    assert len(calls) == 1
    fn, calls = _flaky(1, ValueError)
    with pytest.raises(ValueError):
        outage.until_database_answers(fn, what="w", within=30)
    assert len(calls) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("error", [django.db.OperationalError, redis.exceptions.ConnectionError])
def test_a_periodic_pass_is_skipped_with_one_warning(caplog, error):
    connection.ensure_connection()
    fn, calls = _flaky(1, error)
    with caplog.at_level(logging.INFO, logger="core.outage"):
        assert outage.skip_pass_while_unavailable(fn, what="reaper") is None
    assert [(r.levelno, r.getMessage().split(" (")[0]) for r in caplog.records] == [
        (logging.WARNING, "reaper: skipped, a backing service is unavailable")]
    assert connection.connection is None  # closed: the next pass connects anew
    assert outage.skip_pass_while_unavailable(fn, what="reaper") == "written"
