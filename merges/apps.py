from django.apps import AppConfig


class MergesConfig(AppConfig):
    """Provenance edges between runs: fused answers and merge turns (:mod:`merges.models`)."""

    name = "merges"
    verbose_name = "Merges"

    def ready(self) -> None:
        # The run reads of the conversations app (GET /api/runs/{id}, the session tree, the map) list
        # a run's provenance through these readers, without importing this app. Inside ready(): the
        # modules import models, which are ready only now; receivers connects the export and import.
        from conversations.selectors.runs import register_provenance_edges, register_provenance_reader
        from merges import receivers  # noqa: F401 - connects its receivers (see above)
        from merges.selectors import provenance_edges, provenance_map  # same reason: they read models

        register_provenance_reader(provenance_map)
        register_provenance_edges(provenance_edges)
