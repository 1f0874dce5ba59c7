from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("connections", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="connection",
            name="trusted",
            field=models.BooleanField(
                default=False,
                help_text="Set by an administrator: may reach any address (loopback, private networks).",
            ),
        ),
    ]
