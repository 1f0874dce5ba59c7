"""ASGI entry point: ``uvicorn config.asgi:application``. Streaming (SSE) needs ASGI."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
# A web request waits at most ARBOR_WEB_DB_POOL_TIMEOUT seconds (5) for a database connection, then
# answers 503 (JSON under /api/, a page elsewhere: core.error_pages); workers keep the longer
# ARBOR_DB_POOL_TIMEOUT. Set before the settings are read.
os.environ.setdefault("ARBOR_DB_POOL_TIMEOUT", os.environ.get("ARBOR_WEB_DB_POOL_TIMEOUT", "5"))


def _application():
    from core.middleware import run_mixin_middleware_in_one_thread  # after the environment above

    run_mixin_middleware_in_one_thread()  # one hop to a thread a request, not one per middleware hook
    return get_asgi_application()


application = _application()
