"""The fault suite (``make chaos``): scenarios against a whole Arbor of its own (:mod:`tests.chaos.stack`).
Each scenario adds a row to the table printed at the end of the run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bench.harness import render_table
from tests.chaos.report import HEADERS, NOTES, ROWS
from tests.chaos.stack import PG_BIN, Stack


@pytest.fixture(scope="session")
def stack():
    if PG_BIN is None:
        pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    stack = Stack(Path(tempfile.mkdtemp(prefix="arbor-chaos-")))
    yield stack
    stack.close()


@pytest.fixture(autouse=True)
def _model_endpoint():
    """The chaos stack's processes get their model server's URL in their environment; nothing to patch here."""


def pytest_terminal_summary(terminalreporter):
    if ROWS:
        terminalreporter.write_line(render_table("Fault scenarios (make chaos)", HEADERS, ROWS))
    for note in NOTES:
        terminalreporter.write_line(note)
