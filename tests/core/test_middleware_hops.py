"""Under ASGI a request passes Django's mixin middleware in one thread, not one hop per hook
(``core.middleware.run_mixin_middleware_in_one_thread``)."""

from __future__ import annotations

import asyncio

import httpx
from asgiref.sync import SyncToAsync
from django.utils.deprecation import MiddlewareMixin


def _hops_for(application, path: str) -> tuple[int, list[str]]:
    """``(status, what each sync_to_async call ran)`` of one GET through ``application``."""
    calls = []
    original = SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        calls.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    async def get():
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(path)

    SyncToAsync.__call__ = counting
    try:
        response = asyncio.run(get())
    finally:
        SyncToAsync.__call__ = original
    return response.status_code, calls


def test_a_request_passes_the_mixin_middleware_in_one_thread(monkeypatch):
    from django.core.asgi import get_asgi_application

    monkeypatch.setattr(MiddlewareMixin, "async_capable", True)  # Django's own default
    status, per_hook = _hops_for(get_asgi_application(), "/accounts/login/")
    assert status == 200
    hooks = [name for name in per_hook if name.endswith((".process_request", ".process_response"))]
    assert len(hooks) >= 12, per_hook  # one hop per hook: what run_mixin_middleware_in_one_thread avoids

    import config.asgi  # noqa: F401  (sets the mixin sync only, as uvicorn's import does)

    assert MiddlewareMixin.async_capable is False
    status, hops = _hops_for(get_asgi_application(), "/accounts/login/")
    assert status == 200
    # The whole chain in one hop; then the view's middleware, the (sync) view and its rendering,
    # and what Django's handler hops for anyway (the request_started signal, closing the response).
    assert not [name for name in hops if name.endswith((".process_request", ".process_response"))], hops
    assert len(hops) <= 7 < len(per_hook), (hops, per_hook)
