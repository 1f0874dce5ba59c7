import signal
import time

import httpx
from django.core.management.base import BaseCommand, CommandError

from accounts.first_start import banner


class Command(BaseCommand):
    help = (
        "Wait until Arbor's web server answers at URL, then print the banner: the URL, the administrator "
        "and either the generated password (var/admin-password) or how to set one. With --stay it then "
        "waits for a signal (honcho, which `make run` uses, stops everything when one process ends)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000/")
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the web server")
        parser.add_argument("--stay", action="store_true", help="keep running after the banner until signalled")

    def handle(self, *args, url: str, timeout: float, stay: bool, **options):
        if wait_until_answers(url, timeout):
            self.stdout.write(banner(url))
            self.stdout.flush()
        elif not stay:
            raise CommandError(f"Arbor's web server did not answer at {url} within {timeout:.0f} s")
        else:
            self.stderr.write(f"Arbor's web server did not answer at {url} within {timeout:.0f} s: see its lines above")
        while stay:
            signal.pause()


def wait_until_answers(url: str, timeout: float) -> bool:
    """True once a GET of ``url`` gets any HTTP response (a redirect to the login page is an answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2.0)
            return True
        except httpx.HTTPError:
            time.sleep(0.5)
    return False
