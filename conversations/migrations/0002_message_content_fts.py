"""PostgreSQL only: a GIN index for full-text search of message text (the sessions list's search).

The expression matches what ``SearchVector("content", config="english")`` generates in
``conversations.browse.search_sessions`` exactly (``to_tsvector('english'::regconfig,
COALESCE(content, ''))``), so PostgreSQL can use the index. The index is
not part of the model state (Django cannot express a vendor-specific index), so makemigrations
leaves it alone; on SQLite this migration does nothing (search falls back to LIKE there).
"""

from django.db import migrations

INDEX = "message_content_fts"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("conversations", "Message")._meta.db_table
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON {table} USING gin (to_tsvector('english'::regconfig, COALESCE(content, '')))"
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0001_initial")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
