import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Profile",
            fields=[
                ("user", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True,
                                              related_name="profile", serialize=False, to=settings.AUTH_USER_MODEL)),
                ("theme", models.CharField(choices=[("system", "System"), ("light", "Light"), ("dark", "Dark")],
                                           default="system", max_length=8)),
            ],
        ),
    ]
