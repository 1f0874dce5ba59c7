"""Provenance rides along in Arbor JSON: the export's ``provenance`` and ``fan_outs`` sections
and their import (:mod:`merges.transfer`), through :mod:`conversations.signals`."""

from __future__ import annotations

from django.dispatch import receiver

from conversations.signals import session_export, session_import

from . import transfer


@receiver(session_export, dispatch_uid="merges.export")
def export_provenance(sender, session, run_ids, **kwargs) -> dict:
    """The provenance edges and fan-outs among the exported runs."""
    return transfer.provenance_json(run_ids)


@receiver(session_import, dispatch_uid="merges.import")
def import_provenance(sender, session_id, owner, runs, sections, **kwargs) -> list[str]:
    """Write an imported session's ``provenance`` and ``fan_outs`` sections; returns warnings."""
    if "provenance" not in sections and "fan_outs" not in sections:
        return []
    return transfer.provenance_write(session_id=session_id, runs=runs, sections=sections)
