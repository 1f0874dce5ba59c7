"""core.fields.PackedJSONField: a step's request and response stored deflated, read back exactly."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from conversations.models import Step, StepKind
from core.fields import pack_json, unpack_json
from tests.support.factories import SessionFactory, build_chain

# A model call's request as the engine stores it (issue 26's storage bench, one turn at depth 473).
REQUEST = {
    "model": "smollm2-135m-instruct", "round": 0, "params": {"max_tokens": 512}, "stream": True,
    "sha256": "061c7bcfbee45f77138aa0992761676e68ffc1a0e128ecf1c2421a8238a6e40b",
    "context": {"system": "You are a helpful assistant.", "summary": {"id": 27, "version": 1}, "own_upto": 1,
                "memory_id": "default", "compaction": 27, "from_depth": 473},
    "base_url": "http://127.0.0.1:45863/v1", "connection": "Default", "connection_id": 1,
    "context_parts": {"labels": "system:1 summary:1 history:52 input:1",
                      "totals": {"input": 48, "primer": 4, "system": 12, "history": 5922, "summary": 190},
                      "not_seen": ["Turns 1–473 were summarised (summary 27): the model saw the summary, "
                                   "not the turns."],
                      "message_tokens": " ".join(str(40 + i * 7 % 150) for i in range(55))},
    "message_count": 55, "usable_window": 7680, "context_tokens": 6176,
}


@pytest.mark.parametrize("value", [{}, [], None, "", 0, 1.5, True, {"a": [1, {"b": None}], "é": "✓"}, REQUEST])
def test_a_value_packs_and_unpacks_to_itself(value):
    assert unpack_json(pack_json(value)) == value


def test_small_values_are_kept_as_they_are_and_larger_ones_deflated():
    assert pack_json({}) == b"\x00{}"
    packed = pack_json(REQUEST)
    assert packed[0] == 1 and len(packed) < 400, len(packed)  # ~1,100 bytes as jsonb


def test_an_unknown_format_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="format 7"):
        unpack_json(b"\x07{}")


@pytest.mark.django_db
def test_a_step_stores_its_request_deflated_and_reads_it_back(user):
    run = build_chain(SessionFactory(owner=user), 1)[0]
    step = Step.objects.create(run=run, kind=StepKind.LLM_CALL, name="m", request=REQUEST,
                               response={"characters": 796, "finish_reason": "stop"})
    assert Step.objects.get(pk=step.pk).request == REQUEST
    assert list(Step.objects.filter(pk=step.pk).values_list("response", flat=True)) == [
        {"characters": 796, "finish_reason": "stop"}]
    with connection.cursor() as cursor:
        cursor.execute("SELECT request FROM conversations_step WHERE id = %s", [step.pk])
        stored = bytes(cursor.fetchone()[0])
    assert stored == pack_json(REQUEST) and len(stored) < 400
    Step.objects.filter(pk=step.pk).update(request={"edited": True})
    assert Step.objects.get(pk=step.pk).request == {"edited": True}


@pytest.mark.django_db(transaction=True)
def test_the_migration_packs_existing_steps_and_unpacks_them_back():
    from django.db.migrations.executor import MigrationExecutor  # only this test migrates

    before, packed = [("conversations", "0010_fewer_indexes")], [("conversations", "0011_step_packed_json")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    user = old.get_model("auth", "User").objects.create(username="before-packing")
    session = old.get_model("conversations", "Session").objects.create(owner_id=user.pk, title="s")
    run = old.get_model("conversations", "Run").objects.create(session_id=session.pk, model="m", segment=uuid.uuid4())
    old_step = old.get_model("conversations", "Step")
    old_step.objects.bulk_create([old_step(run_id=run.pk, kind="llm_call", request={**REQUEST, "round": i},
                                           response={"characters": i}) for i in range(1005)])  # two batches

    executor = MigrationExecutor(connection)
    executor.migrate(packed)
    steps = list(Step.objects.order_by("pk"))
    assert [s.request for s in steps] == [{**REQUEST, "round": i} for i in range(1005)]
    assert [s.response for s in steps] == [{"characters": i} for i in range(1005)]

    executor = MigrationExecutor(connection)
    executor.migrate(before)
    back = executor.loader.project_state(before).apps.get_model("conversations", "Step")
    assert [s.request["round"] for s in back.objects.order_by("pk")] == list(range(1005))
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
