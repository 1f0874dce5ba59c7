import signal
import time

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.first_start import banner
from core.queue import workers_consuming


class Command(BaseCommand):
    help = (
        "Wait until Arbor's web server answers at URL and a worker consumes the run queue, then print "
        "the banner: the URL, the administrator and either the generated password (var/admin-password) or "
        "how to set one. With --stay it then waits for a signal (so that "
        "supervisord, which `make run` uses, does not start it again)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000/")
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the web server")
        parser.add_argument("--worker-timeout", type=float, default=60.0,
                            help="seconds to wait, after the web server answers, for a worker on the run queue")
        parser.add_argument("--stay", action="store_true", help="keep running after the banner until signalled")

    def handle(self, *args, url: str, timeout: float, worker_timeout: float, stay: bool, **options):
        if not wait_until_answers(url, timeout):
            message = f"Arbor's web server did not answer at {url} within {timeout:.0f} s: see its lines above"
            if not stay:
                raise CommandError(message)
            self.stderr.write(message)
        else:
            workers = wait_for_workers(settings.ARBOR_RUN_QUEUE, worker_timeout)
            text = banner(url)
            if not workers:
                text += (f"\n  No worker consumes the run queue {settings.ARBOR_RUN_QUEUE!r} yet: "
                         "replies wait until one starts.")
            self.stdout.write(text)
            self.stdout.flush()
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


def wait_for_workers(queue: str, timeout: float) -> list[str]:
    """The workers consuming ``queue`` once there is one (so the banner comes after their start-up
    lines), or [] after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        workers = workers_consuming(queue, timeout=1.0)
        if workers or time.monotonic() >= deadline:
            return workers
