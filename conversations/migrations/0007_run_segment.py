"""Run.segment: the id of the first run of the chain a run belongs to (see conversations/models.py);
and on PostgreSQL a hash index for the path read's message lookups (:func:`add_hash_index`).

Adds the column empty, fills it for every existing run, then makes it NOT NULL and unique with the
depth (on PostgreSQL the unique index also carries ``id``, see :func:`add_constraint`). The fill
reads ``(id, parent_run_id, depth)`` ordered by depth (and age, so the oldest child of a run
continues its segment, as it would have on insert) and gives each run its segment with
:func:`conversations.models.plan_segments`, writing them in batches of ``UPDATE ... FROM (VALUES
...)`` (SQLite ≥ 3.33 and PostgreSQL). PostgreSQL streams the rows through a server-side cursor;
SQLite reads them first (changing a table while a cursor walks it is undefined there). Runs are
never re-parented, so a run's segment never changes after this.
"""

import django.db.models.deletion
from django.db import migrations, models

from conversations.models import plan_segments

BATCH = 5000


def _write(schema_editor, table: str, pairs: list) -> None:
    connection = schema_editor.connection
    values = ", ".join(["(%s, %s)"] * len(pairs))
    params = [v for pair in pairs for v in pair]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET segment = v.column2 FROM (VALUES {values}) AS v WHERE {table}.id = v.column1", params,
        )


def fill(apps, schema_editor):
    Run = apps.get_model("conversations", "Run")
    connection = schema_editor.connection
    alias = connection.alias
    table = connection.ops.quote_name(Run._meta.db_table)
    uuid_field = Run._meta.pk
    rows = Run.objects.using(alias).order_by("depth", "created_at", "id").values_list("id", "parent_run_id", "depth")
    rows = rows.iterator(chunk_size=BATCH) if connection.vendor == "postgresql" else list(rows)
    pairs = []
    for run_id, segment in plan_segments(rows):
        pairs.append((uuid_field.get_db_prep_value(run_id, connection), uuid_field.get_db_prep_value(segment, connection)))
        if len(pairs) >= BATCH:
            _write(schema_editor, table, pairs)
            pairs = []
    if pairs:
        _write(schema_editor, table, pairs)


CONSTRAINT = models.UniqueConstraint(fields=("segment", "depth"), name="run_segment_depth")


def add_constraint(apps, schema_editor):
    """The unique ``(segment, depth)``; on PostgreSQL its index also carries ``id`` (``INCLUDE``), so
    the path read's range scan is index-only and never visits the runs' rows. Django's model state
    has the plain constraint (``include`` would drop the constraint on SQLite), under the same name,
    so removing it later works on both."""
    Run = apps.get_model("conversations", "Run")
    if schema_editor.connection.vendor != "postgresql":
        # Its SQL directly: SQLite's add_constraint would rebuild the table from this historical
        # model, which does not have the constraint yet (the state gets it beside this operation).
        schema_editor.execute(CONSTRAINT.create_sql(Run, schema_editor))
        return
    table = schema_editor.quote_name(Run._meta.db_table)
    schema_editor.execute(f"ALTER TABLE {table} ADD CONSTRAINT run_segment_depth UNIQUE (segment, depth) INCLUDE (id)")


HASH_INDEX = "message_run_hash"


def add_hash_index(apps, schema_editor):
    """PostgreSQL only: a hash index on ``message.run_id`` for the path read's one lookup per run.
    A B-tree probe there costs its height (3 pages at 2,000,000 messages) plus the row; a hash probe
    one bucket page plus the row (the metapage is cached), so a depth-1,000 path reads about 2,400
    buffers instead of 4,100. It replaces the B-tree the foreign key had (the unique (run, position)
    index covers every other lookup by run), so storage stays the same. Not in the model state
    (SQLite has no hash index), like message_content_fts."""
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("conversations", "Message")._meta.db_table)
    schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {HASH_INDEX} ON {table} USING hash (run_id)")


def drop_hash_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {HASH_INDEX}")


def drop_constraint(apps, schema_editor):
    schema_editor.execute(CONSTRAINT.remove_sql(apps.get_model("conversations", "Run"), schema_editor))


class Migration(migrations.Migration):
    dependencies = [("conversations", "0006_branch_tools")]

    operations = [
        migrations.AddField(
            model_name="run",
            name="segment",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="run",
            name="segment",
            field=models.UUIDField(
                editable=False,
                help_text="Id of the first run of this run's segment (its parent's segment for a first child, "
                          "else its own id); written once on insert, read by path reads.",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddConstraint(model_name="run", constraint=CONSTRAINT)],
            database_operations=[migrations.RunPython(add_constraint, drop_constraint, elidable=False)],
        ),
        migrations.RunPython(add_hash_index, drop_hash_index, elidable=False),
        migrations.AlterField(
            model_name="message",
            name="run",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="messages", to="conversations.run"),
        ),
    ]
