from django.apps import AppConfig

from audit.log import Event, track_changes

_IMPORT_FIELDS = ("filename", "format", "size_bytes", "owner_id")


def _import_created(job) -> Event:
    return "import", {f: getattr(job, f) for f in _IMPORT_FIELDS}


class ArchiveConfig(AppConfig):
    name = "archive"
    verbose_name = "Import and export"

    def ready(self) -> None:
        # archive.import: one row per uploaded file, recorded even inside an audited operation
        track_changes(self.get_model("ImportJob"), action_prefix="archive", create=_import_created,
                      change=None, delete=None, inside_operations=("create",))
