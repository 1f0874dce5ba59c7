"""Create the "auditor" group with every view permission (read everything, change nothing).

Permissions are normally created after all migrations (``post_migrate``); they are created here
first so the group gets them on a fresh database. ``audit.groups.sync_auditor_group`` runs again
after every ``migrate`` and adds view permissions of models that appear later.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_group(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None
    from audit.groups import sync_auditor_group

    sync_auditor_group(apps=apps, using=schema_editor.connection.alias)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name="auditor").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_append_only_trigger"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("conversations", "0001_initial"),
        ("memory", "0001_initial"),
        ("accounts", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
