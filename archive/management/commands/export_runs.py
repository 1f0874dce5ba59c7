"""``manage.py export_runs [--user NAME] [--session ID ...] [-o FILE]``: run snapshots as JSONL
(one finished run per line, parents first; format in :mod:`archive.exporters`)."""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from archive.exporters import runs_for_export, write_runs
from conversations.models import Run, Session


class Command(BaseCommand):
    help = "Export finished runs as JSONL run snapshots (one run per line)."

    def add_arguments(self, parser):
        parser.add_argument("--user", help="Username whose sessions to export (default: every session).")
        parser.add_argument("--session", action="append", default=[], help="Session id to export (repeatable).")
        parser.add_argument("-o", "--output", default="-", help="File to write (default: standard output).")

    def handle(self, *args, user=None, session=None, output="-", **options):
        runs = Run.objects.all()
        if user:
            owner = get_user_model().objects.filter(username=user).first()
            if owner is None:
                raise CommandError(f"No user named {user!r}.")
            runs = runs.filter(session__owner=owner)
        if session:
            try:
                found = set(Session.objects.filter(pk__in=session).values_list("pk", flat=True))
            except ValidationError as exc:
                raise CommandError(f"Not a session id: {exc.messages[0]}") from None
            missing = [s for s in session if s not in {str(f) for f in found}]
            if missing:
                raise CommandError(f"No session with id {', '.join(missing)}.")
            runs = runs.filter(session_id__in=found)
        if output == "-":
            count = write_runs(runs_for_export(runs), sys.stdout)
        else:
            with open(output, "w", encoding="utf-8") as fp:
                count = write_runs(runs_for_export(runs), fp)
        self.stderr.write(f"Exported {count} runs.")
