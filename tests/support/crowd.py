"""Many API clients at once, as a crowd of users would be (``bench engine`` and the crowd tests):
each POSTs a run and reads its SSE stream to ``done`` on one asyncio event loop."""

from __future__ import annotations

import asyncio
import time

import httpx


async def one_run(client: httpx.AsyncClient, base: str, token: str, session_id, text: str) -> dict:
    """POST a run in ``session_id`` and read its stream to ``done``, reconnecting with
    ``Last-Event-ID`` (at most 5 times) when a stream ends early. Returns seconds from the POST:
    ``{"post", "first" (first delta), "done"}``, ``"reconnects"`` (streams cut before ``done``),
    ``"status"`` (``done``'s) and ``"error"`` (the POST's status or the client's exception, else "")."""
    auth = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    response = await client.post(f"{base}/api/sessions/{session_id}/runs", json={"input": text}, headers=auth)
    result = {"post": time.monotonic() - started, "first": None, "done": None, "reconnects": 0, "status": "",
              "error": "" if response.status_code == 202 else f"POST {response.status_code}"}
    if result["error"]:
        return result
    run_id = response.json()["run_id"]
    last_id = None
    while result["done"] is None and result["reconnects"] <= 5:
        headers = {**auth, **({"Last-Event-ID": last_id} if last_id else {})}
        event = None
        try:
            async with client.stream("GET", f"{base}/api/runs/{run_id}/events", headers=headers) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("id: "):
                        last_id = line[4:]
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "delta" and result["first"] is None:
                        result["first"] = time.monotonic() - started
                    elif line.startswith("data: ") and event == "done":
                        result["done"] = time.monotonic() - started
                        result["status"] = "succeeded" if '"succeeded"' in line else line[6:80]
        except httpx.HTTPError as exc:
            result["error"] = type(exc).__name__
        if result["done"] is None:
            result["reconnects"] += 1
    return result


async def burst(base: str, token: str, session_ids: list, text: str) -> list[dict]:
    """One run per session of ``session_ids``, all at once (input ``"<text> #<i>"``); their results."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(connect=30, read=120, write=30, pool=None)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        return await asyncio.gather(*(one_run(client, base, token, s, f"{text} #{i}")
                                      for i, s in enumerate(session_ids)))
