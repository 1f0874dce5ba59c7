"""The "auditor" group: every *view* permission and nothing else.

An auditor (a staff user in this group) can open every changelist and object page of the admin,
read-only, and the run audit pages; every add, change and delete answers 403. The group is created
by migration ``audit.0003`` and kept complete by a ``post_migrate`` receiver, so view permissions of
models added later (other apps, new migrations) join it automatically.
"""

from __future__ import annotations

from django.apps import apps as global_apps

AUDITOR_GROUP = "auditor"


def sync_auditor_group(sender=None, apps=None, using="default", **kwargs) -> None:
    """Create the auditor group if missing and give it exactly the view permissions that exist.

    ``apps``: a migration's historical registry, or None for the live one (``post_migrate``).
    """
    if apps is None:
        apps = global_apps
    try:
        group_model = apps.get_model("auth", "Group")
        permission_model = apps.get_model("auth", "Permission")
    except LookupError:  # auth not migrated yet
        return
    group, _ = group_model.objects.using(using).get_or_create(name=AUDITOR_GROUP)
    group.permissions.set(list(permission_model.objects.using(using).filter(codename__startswith="view_")))
