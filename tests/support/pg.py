"""PostgreSQL facts for tests and benchmarks: :class:`PeakConnections` samples how many connections
the test database has while something runs."""

from __future__ import annotations

import threading

from django.db import connection


class PeakConnections(threading.Thread):
    """Samples PostgreSQL's connections to the current database every 0.1 s (its own connection
    not counted); ``peak`` is the most seen. ``start()``, then ``stop()`` returns the peak."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0
        self._halt = threading.Event()
        params = connection.get_connection_params()
        self._params = {k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port")}

    def run(self) -> None:
        import psycopg  # PostgreSQL only

        with psycopg.connect(**self._params, autocommit=True) as conn:
            while not self._halt.wait(0.1):
                count = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                     ).fetchone()[0]
                self.peak = max(self.peak, count - 1)  # not counting this sampler

    def stop(self) -> int:
        self._halt.set()
        self.join(5)
        return self.peak
