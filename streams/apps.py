from django.apps import AppConfig


class StreamsConfig(AppConfig):
    """Run event streams; its model :class:`streams.models.RunEvent` keeps the table it had in the
    conversations app (``conversations_runevent``)."""

    name = "streams"
