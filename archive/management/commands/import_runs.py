"""``manage.py import_runs FILE --user NAME [--new-ids]``: read JSONL run snapshots back into the
same tree (one transaction); skipped lines are listed with their reasons."""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from archive.snapshots import read_runs


class Command(BaseCommand):
    help = "Import JSONL run snapshots (written by export_runs) for a user."

    def add_arguments(self, parser):
        parser.add_argument("file", help="JSONL file, or - for standard input.")
        parser.add_argument("--user", required=True, help="Username that will own the imported sessions.")
        parser.add_argument("--new-ids", action="store_true",
                            help="Give runs and sessions new ids (import a copy beside the original).")

    def handle(self, *args, file, user, new_ids=False, **options):
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"No user named {user!r}.")
        try:
            if file == "-":
                report = read_runs(sys.stdin, user=owner, keep_ids=not new_ids)
            else:
                with open(file, encoding="utf-8") as fp:
                    report = read_runs(fp, user=owner, keep_ids=not new_ids)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{file} is not UTF-8 text.") from None
        for skipped in report.skipped:
            self.stderr.write(f"line {skipped.line}: skipped ({skipped.reason})")
        self.stdout.write(report.summary() + ".")
        if report.runs_imported == 0 and report.skipped:
            raise CommandError("Nothing was imported.")
