"""``manage.py load_demo [--user NAME]``: the demo sessions, "Tour of Arbor" and a fork of it."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.first_start import administrator
from archive import services
from core.errors import InvalidInput


class Command(BaseCommand):
    help = ("Load the demo: the session 'Tour of Arbor' (branch points, an edit, a regeneration, a compaction "
            "marker, a finished A/B comparison with votes) and a fork of it, imported from "
            "archive/demo/tour-of-arbor.json for the administrator (or --user). `make run` runs it on every "
            "start; a demo loaded before, even if deleted since, is not loaded again.")

    def add_arguments(self, parser):
        parser.add_argument("--user", help="owner of the demo sessions (default: the administrator)")

    def handle(self, *args, user=None, verbosity=1, **options):
        owner = get_user_model().objects.filter(username=user).first() if user else administrator()
        if owner is None:
            raise CommandError(f"no user named {user!r}" if user else
                               "no administrator to own the demo: run `manage.py ensure_admin` or give --user")
        try:
            report, loaded = services.demo_load(owner=owner)
        except InvalidInput as exc:
            raise CommandError(str(exc)) from exc
        if loaded:
            titles = ", ".join(repr(item["title"]) for item in report.imported_items)
            self.stdout.write(f"Demo loaded for {owner.get_username()}: {titles} ({report.runs} runs)")
        elif verbosity > 1:
            self.stdout.write(f"The demo was loaded for {owner.get_username()} before: nothing to do")
