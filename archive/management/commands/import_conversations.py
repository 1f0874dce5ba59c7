"""``manage.py import_conversations FILE --format auto|chatgpt|openwebui|sharegpt|jsonl|arbor --user NAME``"""

from __future__ import annotations

import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from archive import services


class Command(BaseCommand):
    help = ("Import conversations (ChatGPT export JSON or ZIP, Open WebUI, ShareGPT, Arbor JSON or JSON Lines) "
            "for a user, and print what was imported and what was skipped and why.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="conversations.json, a ChatGPT export .zip, or any supported JSON/JSONL file")
        parser.add_argument("--format", default="auto", choices=services.FORMAT_CHOICES)
        parser.add_argument("--user", required=True, help="username of the owner of the imported sessions")
        parser.add_argument("--again", action="store_true",
                            help="import conversations this user already imported from the same source ids")
        parser.add_argument("--quiet-items", action="store_true", help="print counts only, not every skipped record")

    def handle(self, *args, file, format, user, quiet_items, again, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"no such file: {file}")
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"no user named {user!r}")
        job = services.import_command_job(owner=owner, path=path, format=format)
        interactive = sys.stderr.isatty()

        def progress(report, done, total):
            if interactive:
                sys.stderr.write(
                    f"\r{100 * done // max(total, 1):3d}%  {report.imported} imported, {report.skipped} skipped"
                )
                sys.stderr.flush()

        report = services.import_archive(path=path, owner=owner, format=format, job=job, progress=progress, again=again)
        services.import_command_finish(job=job, report=report)
        if interactive:
            sys.stderr.write("\n")
        self.stdout.write(f"{path.name} ({report.format}): {report.summary()}")
        for problem in report.problems:
            self.stdout.write(self.style.WARNING(f"file problem: {problem['where']}: {problem['message']}"))
        if report.warning_counts:
            self.stdout.write("repairs:")
            for kind, n in sorted(report.warning_counts.items(), key=lambda kv: -kv[1]):
                self.stdout.write(f"  {n} conversation(s): {kind}")
        if not quiet_items:
            for item in report.skipped_items:
                label = " ".join(x for x in (item["source_id"], repr(item["title"]) if item["title"] else "") if x)
                self.stdout.write(self.style.WARNING(f"skipped {item['where']} {label}: {item['reason']}"))
            if report.skipped > len(report.skipped_items):
                self.stdout.write(f"... and {report.skipped - len(report.skipped_items)} more skipped")
