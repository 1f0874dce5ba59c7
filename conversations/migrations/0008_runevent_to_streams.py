"""RunEvent now belongs to the streams app (``streams.0001`` takes the table over in Django's
state): only the state changes here, the table and its rows stay."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0007_run_segment"),
        ("streams", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="RunEvent")],
            database_operations=[],
        ),
    ]
