from django.apps import AppConfig


class MergesConfig(AppConfig):
    """Provenance edges between runs: fused answers and merge turns (:mod:`merges.models`)."""

    name = "merges"
    verbose_name = "Merges"

    def ready(self) -> None:
        # The run reads of the conversations app (GET /api/runs/{id}, the session tree) list the
        # provenance of a run through this reader, without importing this app.
        # Both import models, which are ready only now (inside ready()).
        from conversations.selectors.runs import register_provenance_edges, register_provenance_reader
        from merges.selectors import provenance_edges, provenance_map  # same reason: they read this app's models

        register_provenance_reader(provenance_map)
        register_provenance_edges(provenance_edges)
