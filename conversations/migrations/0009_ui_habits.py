"""Habits people bring from other chat apps: pinned sessions (Session.pinned_at), thumbs on answers
(Run.rating) and "Continue generating" (Run.continues_answer). Nullable or defaulted columns: no
rewrite of existing rows."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("conversations", "0008_runevent_to_streams")]

    operations = [
        migrations.AddField(
            model_name="session", name="pinned_at",
            field=models.DateTimeField(blank=True, null=True, help_text="Pinned to the top of the sidebar since."),
        ),
        migrations.AddField(
            model_name="run", name="continues_answer",
            field=models.BooleanField(default=False, help_text=(
                "Asks the model to continue its parent run's answer, cut at max_tokens (\"Continue generating\"): "
                "the chat shows both as one turn.")),
        ),
        migrations.AddField(
            model_name="run", name="rating",
            field=models.SmallIntegerField(blank=True, null=True, help_text=(
                "The owner's thumbs on the answer: 1 up, -1 down, empty when not rated (for comparison statistics).")),
        ),
    ]
