"""Fault scenarios of the guards, against the chaos stack's own Arbor (its own PostgreSQL, Redis,
web, worker and beat; nothing is restarted): a user who is not an administrator tries to make the
server reach inside (every internal address refused, nothing saved; the local model's address,
the default allow-list, accepted), and uploads the 541-byte nest-bomb ZIP (its job fails with the
reason, the import child's peak RSS is read from the worker's log, the worker lives on)."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.archive.test_import_limits import nest_bomb
from tests.chaos.report import NOTES

pytestmark = pytest.mark.chaos


def internal_urls(stack) -> list[str]:
    """Loopback in every spelling, aimed at the stack's own PostgreSQL, Redis and web ports, plus
    private, link-local and metadata addresses (only loopback is ever connected to, if at all)."""
    urls = []
    for port in (stack.pg.port, stack.redis.port, stack.web_port):
        urls += [f"http://127.0.0.1:{port}/v1", f"http://localhost:{port}/v1", f"http://2130706433:{port}/v1",
                 f"http://0x7f000001:{port}/v1", f"http://0177.0.0.1:{port}/v1", f"http://[::1]:{port}/v1",
                 f"http://[::ffff:127.0.0.1]:{port}/v1", f"http://0.0.0.0:{port}/v1"]
    return urls + ["http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/computeMetadata/v1/",
                   "http://10.0.0.1/v1", "http://172.16.0.1/v1", "http://192.168.1.1/v1", "http://[fd00::1]/v1",
                   "http://[fe80::1]/v1", "http://100.64.0.1/v1", "http://224.0.0.1/v1"]


def test_a_user_cannot_make_the_server_reach_inside(stack):
    urls = internal_urls(stack)
    refused, statuses = 0, {}
    with httpx.Client(timeout=30, headers=stack.auth) as client:
        for i, url in enumerate(urls):
            response = client.post(f"{stack.base}/api/connections", json={"name": f"inside {i}", "base_url": url})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            refused += response.status_code == 400 and "not a public address" in response.json()["detail"]
        saved = [c["base_url"] for c in client.get(f"{stack.base}/api/connections").json()["items"]]
        local = client.post(f"{stack.base}/api/connections", json={"name": "local model",
                                                                   "base_url": stack.model.url})
    NOTES.append(f"SSRF (non-admin, default allow-list = the local model's address): {refused}/{len(urls)} internal "
                 f"URLs refused (statuses {statuses}); the local model's {urlsplit(stack.model.url).netloc} "
                 f"accepted: HTTP {local.status_code}")
    assert refused == len(urls)
    assert not any(u in saved for u in urls)
    assert local.status_code == 201 and local.json()["warning"] == ""


def test_the_nest_bomb_fails_its_own_job_and_nothing_else(stack):
    before = stack.pids()
    bomb = nest_bomb()
    with httpx.Client(timeout=30, headers=stack.auth) as client:
        response = client.post(f"{stack.base}/api/imports", files={"file": ("bomb.zip", bomb, "application/zip")})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 120
        while (job := client.get(f"{stack.base}/api/imports/{job_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"import job still {job['status']}"
            time.sleep(0.5)
    pattern = rf"import job {job_id}: child exited (-?\d+), peak RSS (\d+) MiB \(limit (\d+) MiB\)"
    deadline = time.monotonic() + 30  # the job is failed by the child, which then exits
    while not (found := re.search(pattern, stack.output())) and time.monotonic() < deadline:
        time.sleep(0.5)
    NOTES.append(f"nest bomb ({len(bomb)} bytes, 200,000 levels): job {job['status']}: {job.get('error', '')[:140]}; "
                 + (f"import child exit {found[1]}, peak RSS {found[2]} MiB of a {found[3]} MiB limit; "
                    if found else "import child not found in the worker log; ")
                 + f"CPU worker the same process: {stack.pids()['worker'] == before['worker']}")
    assert job["status"] == "failed" and "nested more than" in job["error"]
    assert found and found[1] == "0" and int(found[2]) < int(found[3])
    assert stack.pids() == before, "no program died (supervisord started none again)"
    run_ids = stack.start_runs(2, "[[tokens:3]]", "after the bomb")
    states = stack.wait_finished(run_ids, timeout=60)
    assert all(states[r]["status"] == "succeeded" for r in run_ids)
