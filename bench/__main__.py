"""``python -m bench [name ...]``: run benchmark modules ``bench/bench_<name>.py`` on a fresh
database (``bench_arbor`` on PostgreSQL when ``DATABASE_URL`` is set, else a SQLite file)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    os.environ.setdefault("ARBOR_TEST_DB_NAME", "bench_arbor")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment

    from bench.harness import Bench
    from tests.llm_server import FakeLLMServer

    names = argv or sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                           if m.name.startswith("bench_"))
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    server = FakeLLMServer().start()
    settings.OPENAI_BASE_URL = server.base_url
    print(f"database: {connection.vendor} ({connection.settings_dict['NAME']}); stream: {settings.ARBOR_STREAM_URL}")
    bench = Bench(llm_base_url=server.base_url)
    try:
        for name in names:
            module = importlib.import_module(f"bench.bench_{name}")
            module.run(bench)
    finally:
        server.stop()
        connection.close()
        if getattr(connection, "pool", None) is not None:  # PostgreSQL's pool keeps idle connections open
            connection.close_pool()
        connection.creation.destroy_test_db(old_name, verbosity=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
