"""Fewer indexes on the rows every turn writes or updates, and a full-text index that stays fit.

- Session: ``updated_at`` and ``active_run`` change on every turn; unindexed, that UPDATE is HOT.
- Run: the single-column indexes that a composite index already leads with (session, parent run)
  go, as do ``status``'s and ``memory_id``'s (and their pattern, ``LIKE``, indexes); the reaper's
  reads use a partial index of the unfinished runs instead (``run_unfinished``), so that claiming a
  run is a HOT update and only its final state writes index entries.
- Message full-text index (PostgreSQL): ``fastupdate`` off. With it on, each insert appends its
  whole tsvector to a pending list that grows to ``gin_pending_list_limit`` (4 MB) before it is
  merged, and searches read it all; off, each insert goes into the index's posting lists. The
  pending list an existing database holds is merged now (``gin_clean_pending_list``).
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


FTS_INDEX = "message_content_fts"  # migration 0002


def fts_fastupdate_off(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER INDEX IF EXISTS {FTS_INDEX} SET (fastupdate = off)")
    schema_editor.execute(f"SELECT gin_clean_pending_list(to_regclass('{FTS_INDEX}'))")  # NULL: no index


def fts_fastupdate_on(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER INDEX IF EXISTS {FTS_INDEX} RESET (fastupdate)")


class Migration(migrations.Migration):

    dependencies = [
        ('connections', '0002_connection_trusted'),
        ('conversations', '0009_ui_habits'),
        ('memory', '0009_branch_settings'),
    ]

    operations = [
        migrations.RunPython(fts_fastupdate_off, fts_fastupdate_on, elidable=False),
        migrations.RemoveIndex(
            model_name='session',
            name='session_owner_updated',
        ),
        migrations.AlterField(
            model_name='run',
            name='memory_id',
            field=models.CharField(default='default', help_text='The memory id of the agent that answered (copied: history must not change if the agent does).', max_length=100),
        ),
        migrations.AlterField(
            model_name='run',
            name='parent_run',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='children', to='conversations.run'),
        ),
        migrations.AlterField(
            model_name='run',
            name='session',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='runs', to='conversations.session'),
        ),
        migrations.AlterField(
            model_name='run',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=16),
        ),
        migrations.AlterField(
            model_name='session',
            name='active_run',
            field=models.ForeignKey(blank=True, db_index=False, help_text='The leaf the owner is looking at; kept across reloads and devices.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='conversations.run'),
        ),
        migrations.AlterField(
            model_name='session',
            name='updated_at',
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(condition=models.Q(('finished_at__isnull', True)), fields=['created_at'], name='run_unfinished'),
        ),
    ]
