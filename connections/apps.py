from django.apps import AppConfig

from audit.log import Event, track_changes

# Saves that only record a health check or a model-list refresh are not changes anyone made.
_CHECK_FIELDS = frozenset({"health", "health_latency_ms", "health_message", "health_checked_at",
                           "models_refreshed_at", "models_error"})


def _created(connection) -> Event | None:
    # What the audit row keeps: never the key or the headers (their names are not recorded either).
    # The default connection's row is made on first use, by no one in particular: not recorded.
    if connection.from_environment:
        return None
    return "create", {"base_url": connection.shown_url, "shared": connection.is_shared,
                      "has_key": bool(connection.api_key)}


def _changed(connection, fields: frozenset[str]) -> list[Event]:
    if fields and fields <= _CHECK_FIELDS:
        return []
    if "deleted_at" in fields:
        return [("delete", None)]
    return [("change", {"base_url": connection.shown_url, "enabled": connection.enabled,
                        "shared": connection.is_shared, "has_key": bool(connection.api_key)})]


class ConnectionsConfig(AppConfig):
    name = "connections"
    verbose_name = "Model connections"

    def ready(self) -> None:
        # connection.create / connection.change / connection.delete (deleting keeps the row)
        track_changes(self.get_model("Connection"), action_prefix="connection", create=_created,
                      change=_changed)
