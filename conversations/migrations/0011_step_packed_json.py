"""A step's request and response stored compressed (``core.fields.PackedJSONField``: deflated
compact JSON in a binary column) instead of ``jsonb``: a model call's request of ~1 KB in ``jsonb``
takes ~200 bytes. PostgreSQL would not compress it itself: it compresses values only in rows over
~2 KB (``TOAST_TUPLE_THRESHOLD``, a compile-time constant; ``toast_tuple_target`` and the column's
``COMPRESSION`` apply only past it).

Existing steps are packed in batches of 1,000 (both databases): new columns, copy, drop the old
ones, rename. Reversible.
"""

from django.db import migrations

import core.fields

BATCH = 1000


def copy(apps, schema_editor, source: str, target: str):
    Step = apps.get_model("conversations", "Step")
    steps = Step.objects.using(schema_editor.connection.alias).order_by("pk")
    last = 0
    while batch := list(steps.filter(pk__gt=last).only("pk", f"{source}_request", f"{source}_response")[:BATCH]):
        for step in batch:
            setattr(step, f"{target}_request", getattr(step, f"{source}_request"))
            setattr(step, f"{target}_response", getattr(step, f"{source}_response"))
        Step.objects.using(schema_editor.connection.alias).bulk_update(
            batch, [f"{target}_request", f"{target}_response"])
        last = batch[-1].pk


def pack(apps, schema_editor):
    copy(apps, schema_editor, "json", "packed")


def unpack(apps, schema_editor):
    copy(apps, schema_editor, "packed", "json")


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0010_fewer_indexes"),
    ]

    operations = [
        migrations.RenameField(model_name="step", old_name="request", new_name="json_request"),
        migrations.RenameField(model_name="step", old_name="response", new_name="json_response"),
        migrations.AddField(
            model_name="step", name="packed_request",
            field=core.fields.PackedJSONField(blank=True, default=dict, help_text="What was sent, API keys masked."),
        ),
        migrations.AddField(
            model_name="step", name="packed_response", field=core.fields.PackedJSONField(blank=True, default=dict),
        ),
        migrations.RunPython(pack, unpack, elidable=False),
        migrations.RemoveField(model_name="step", name="json_request"),
        migrations.RemoveField(model_name="step", name="json_response"),
        migrations.RenameField(model_name="step", old_name="packed_request", new_name="request"),
        migrations.RenameField(model_name="step", old_name="packed_response", new_name="response"),
    ]
