"""The ``(segment, depth)`` index also carries ``memory_id`` (PostgreSQL): a worker's path read
(``conversations.context_spec.path_facts``: each run's depth and memory id along the path) is then
index-only and reads no run row. At depth 1,000 on 1,000,000 runs its buffers went from 1,128 to
125 per read, 2.9 / 3.0 ms at the server warm / cold (``bench tree``). About 8–16 bytes more per run
in the index. SQLite keeps the plain unique constraint (no ``INCLUDE``). The model state does not
change: the constraint keeps its name and fields (see 0007)."""

from django.db import migrations

CREATE = "ALTER TABLE conversations_run ADD CONSTRAINT run_segment_depth UNIQUE (segment, depth) INCLUDE ({})"
DROP = "ALTER TABLE conversations_run DROP CONSTRAINT run_segment_depth"


def _include(columns: str):
    def rebuild(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        schema_editor.execute(DROP)
        schema_editor.execute(CREATE.format(columns))

    return rebuild


class Migration(migrations.Migration):
    dependencies = [("conversations", "0011_step_packed_json")]

    operations = [migrations.RunPython(_include("id, memory_id"), _include("id"))]
