"""Schemathesis on the evaluation operations only (rubrics, judgings, agreement, suites, results):
valid and invalid data, generated and real ids; no 5xx, only what the schema documents, invalid
data never accepted. The same checks as tests/test_schema_fuzz.py, which covers every operation."""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis import GenerationMode

from comparisons import judging, suites
from comparisons.models import Rubric
from tests.config.test_schema_fuzz import _fuzz, _real_ids
from tests.support.factories import AgentFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.chaos]

PATHS = ("/api/rubrics", "/api/suites", "/judgings", "/agreement", "/api/comparisons/results")


def test_evaluation_operations_answer_only_what_the_schema_documents(asgi_server, api_token, user):
    real = _real_ids(user)
    from comparisons.models import Comparison

    comparison = Comparison.objects.get(pk=real["comparison_id"])
    agent = AgentFactory(owner=user, name="fuzz judge")
    found = judging.judging_start(comparison=comparison, agent=agent, rubric_name="r", rubric_text="t")
    suite = suites.suite_save(owner=user, name="fuzz", leaves=[comparison.session.runs.order_by("depth").last()])
    rubric = Rubric.objects.create(owner=user, name="fuzz rubric", text="t")
    real.update(judging_id=str(found.pk), suite_id=str(suite.pk), rubric_id=str(rubric.pk))
    auth = {"Authorization": f"Bearer {api_token}"}
    schema = schemathesis.openapi.from_url(f"{asgi_server}/api/openapi.json", headers=auth)
    operations = [op for op in (r.ok() for r in schema.get_all_operations())
                  if any(p in op.path or op.path.startswith(p) for p in PATHS)]
    assert len(operations) >= 12, [op.label for op in operations]
    failures: list[str] = []
    counts = {"cases": 0, "5xx": 0, "statuses": set()}
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, auth, failures, counts)
            if names:
                _fuzz(operation, mode, auth, failures, counts,
                      path_parameters={k: v for k, v in real.items() if k in names})
    assert counts["cases"] >= 10 * len(operations)
    assert counts["5xx"] == 0 and not failures, "\n\n".join(failures[:15])
