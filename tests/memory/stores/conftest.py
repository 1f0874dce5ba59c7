"""Fixtures for the memory store contract suite: one ``store_spec`` per backend.

A spec opens the same store any number of times (``spec.open()``: new objects over the same data,
as separate threads or processes would) and describes it for a child process (``spec.child``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.support.processes import ROOT, child_env

REDIS_URL = os.environ.get("ARBOR_TEST_STORES_REDIS_URL", "redis://127.0.0.1:6379/13")
BACKENDS = ["memory", "jsonl", pytest.param("database", marks=pytest.mark.django_db(transaction=True)), "redis"]


@dataclass
class StoreSpec:
    backend: str
    options: dict = field(default_factory=dict)
    shared: object = None  # the one in-memory store (it lives in this process only)

    @property
    def multiprocess(self) -> bool:
        return self.backend != "memory"

    def open(self, **extra):
        from memory import stores

        if self.backend == "memory":
            if extra:
                return stores.InMemoryMemoryStore(**extra)
            return self.shared
        if self.backend == "jsonl":
            return stores.JSONLMemoryStore(self.options["path"], **extra)
        if self.backend == "redis":
            return stores.RedisMemoryStore(self.options["url"], memory_id=self.options["memory_id"], **extra)
        from search.memory_store import DatabaseMemoryStore  # needs Django set up: database backend only

        return DatabaseMemoryStore(self.options["memory_id"], user=self.options["user_id"], **extra)

    @property
    def child(self) -> str:
        return json.dumps({"backend": self.backend, "options": self.options})


def run_children(spec: StoreSpec, llm_server, writers: int, count: int, timeout: float = 120) -> list[str]:
    """Start ``writers`` processes that each add ``count`` messages to the store; wait for all."""
    env = child_env(llm_server)
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.memory.stores.child", spec.child, str(w), str(count)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for w in range(writers)
    ]
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        outputs.append(out.decode(errors="replace"))
        assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    return outputs


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=BACKENDS)
def store_spec(request, tmp_path: Path):
    backend = request.param
    if backend == "memory":
        from memory.stores import InMemoryMemoryStore

        yield StoreSpec("memory", shared=InMemoryMemoryStore())
    elif backend == "jsonl":
        yield StoreSpec("jsonl", {"path": str(tmp_path / "memory.jsonl")})
    elif backend == "redis":
        if not redis_available():
            pytest.skip(f"Redis is not reachable at {REDIS_URL}")
        client = redis.Redis.from_url(REDIS_URL)
        client.flushdb()
        yield StoreSpec("redis", {"url": REDIS_URL, "memory_id": f"contract-{uuid.uuid4().hex[:8]}"})
        client.flushdb()
    else:
        from tests.support.factories import UserFactory

        user = UserFactory()
        yield StoreSpec("database", {"memory_id": "contract", "user_id": user.pk})


@pytest.fixture
def store(store_spec):
    return store_spec.open()


@pytest.fixture
def hashed_embedder(llm_server):
    """The fake endpoint's /v1/embeddings (hashed bag of words) through the real HTTP client."""
    from memory.semantic import EndpointEmbedder

    return EndpointEmbedder(llm_server.base_url, "sk-test", "fake-embedding")
