from django.apps import AppConfig

from audit.log import Event, track_changes


def _session_created(session) -> Event:
    if session.forked_from_run_id:
        return "fork", {"run_id": session.forked_from_run_id}
    return "create", {"title": session.title}


def _session_changed(session, fields: frozenset[str]) -> list[Event]:
    """A soft delete or restore, a rename (both at once is two rows), or any other full save."""
    if not fields:
        return [("change", {"title": session.title, "deleted": session.is_deleted})]
    events: list[Event] = []
    if "deleted_at" in fields:
        events.append(("delete" if session.deleted_at else "restore", None))
    if "title" in fields:
        events.append(("rename", {"title": session.title}))
    return events


def _session_purged(session) -> Event:
    return "purge", {"owner_id": session.owner_id}


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - connects the run_finished receiver (background titles)

        # session.create / fork / rename / delete / restore / change; a hard delete is session.purge,
        # recorded even inside an audited operation.
        track_changes(self.get_model("Session"), action_prefix="session", create=_session_created,
                      change=_session_changed, delete=_session_purged, inside_operations=("delete",))
