from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("conversations", "0003_message_content_encrypted")]

    operations = [
        migrations.AddField(
            model_name="run",
            name="requeued_at",
            field=models.DateTimeField(
                blank=True, help_text="When the reaper last sent this run to the queue again.", null=True,
            ),
        ),
        migrations.AddField(
            model_name="run",
            name="requeues",
            field=models.PositiveSmallIntegerField(default=0, help_text="How often the reaper sent it again."),
        ),
    ]
