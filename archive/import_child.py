"""``python -m archive.import_child JOB_ID LIMIT_MB [PEAK_FILE]``: cap this process's address space
at LIMIT_MB MiB (``setrlimit(RLIMIT_AS)``), then load Django and run the import job (see
:mod:`archive.isolation`). Nothing of Django is imported before the cap is set. On the way out the
process's own peak resident memory (``VmHWM`` of ``/proc/self/status``, in KiB) is written to
PEAK_FILE: ``wait4``'s ``ru_maxrss`` would include the parent's memory at the fork."""

from __future__ import annotations

import os
import resource
import sys


def peak_rss_kib() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main(job_id: str, limit_mb: int, peak_file: str | None = None) -> int:
    limit = limit_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    status = 1
    try:
        import django  # the child is a fresh interpreter: Django is set up here, after the memory cap

        django.setup()
        from archive.jobs import import_job_execute  # needs the apps loaded by django.setup()

        import_job_execute(job_id=job_id)
        status = 0
    finally:
        if peak_file:
            with open(peak_file, "w", encoding="ascii") as out:
                out.write(str(peak_rss_kib() or ""))
    return status


if __name__ == "__main__":
    code = main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
    sys.stdout.flush()
    sys.stderr.flush()
    # The job is recorded: leave now, without waiting for threads a library may have left running
    # (a client's background thread would otherwise hold this process, and the worker, open).
    os._exit(code)
