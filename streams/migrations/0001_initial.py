"""RunEvent moves from the conversations app to streams: Django's state only (the table
``conversations_runevent`` stays as it is, with its rows and constraint)."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("conversations", "0007_run_segment"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="RunEvent",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("seq", models.PositiveIntegerField()),
                        ("type", models.CharField(max_length=16)),
                        ("data", models.JSONField(default=dict)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("run", models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                                  related_name="+", to="conversations.run")),
                    ],
                    options={
                        "db_table": "conversations_runevent",
                        "constraints": [models.UniqueConstraint(fields=("run", "seq"), name="runevent_run_seq")],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
