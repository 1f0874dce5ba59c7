"""``manage.py export_session SESSION_ID --format arbor|jsonl|chatgpt|markdown [--run RUN_ID] [-o FILE]``"""

from __future__ import annotations

import sys
import uuid

from django.core.management.base import BaseCommand, CommandError

from archive import exporters
from conversations.models import Run, Session


class Command(BaseCommand):
    help = "Export a session as Arbor JSON, JSON Lines, ChatGPT JSON or Markdown (one branch) to a file or stdout."

    def add_arguments(self, parser):
        parser.add_argument("session_id")
        parser.add_argument("--format", default="arbor", choices=sorted(exporters.EXPORT_FORMATS))
        parser.add_argument("--run", help="Markdown: the branch ending at this run (default: the active run)")
        parser.add_argument("-o", "--output", help="file to write (default: stdout)")

    def handle(self, *args, session_id, format, run, output, **options):
        session = Session.objects.filter(pk=session_id).first() if _is_uuid(session_id) else None
        if session is None:
            raise CommandError(f"no session {session_id}")
        target = None
        if run:
            target = Run.objects.filter(pk=run).first() if _is_uuid(run) else None
            if target is None or not session.can_branch_from(target):
                raise CommandError(f"run {run} is not in session {session_id}")
        export = exporters.export_session(session=session, format=format, run=target)
        out = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115 - closed below
        try:
            for chunk in export.chunks:
                out.write(chunk)
        finally:
            if output:
                out.close()
                self.stderr.write(f"wrote {output}")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
