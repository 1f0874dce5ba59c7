"""Semantic search across a user's sessions: the embedders, the index, search_messages and the pages."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from conversations.models import Session
from memory import semantic
from memory.stores.models import MessageEmbedding
from search import selectors as search
from tests.support.factories import RunFactory, SessionFactory


@pytest.fixture
def endpoint_embeddings(settings, llm_server):
    """Semantic search through the configured endpoint's /v1/embeddings (the fake server's hashed words)."""
    settings.ARBOR_EMBEDDINGS = "endpoint"
    settings.ARBOR_EMBEDDING_MODEL = "fake-embedding"
    return semantic.get_embedder()


def conversations_of(user):
    cooking = SessionFactory(owner=user, title="Cooking")
    r1 = RunFactory(session=cooking,
                    turn=("how long should sourdough bread proof", "About twelve hours in the fridge."))
    servers = SessionFactory(owner=user, title="Servers")
    r2 = RunFactory(session=servers, turn=("nginx returns 502 bad gateway", "Check that the upstream socket is up."))
    r3 = RunFactory(session=servers, parent_run=r2,
                    turn=("and the upstream is gunicorn", "Then read gunicorn's error log."))
    return cooking, servers, (r1, r2, r3)


def test_local_model_matches_the_published_similarities():
    """The NumPy MiniLM reproduces sentence-transformers' all-MiniLM-L6-v2 example similarities
    (0.6660, 0.1046, 0.1411 in its documentation) and returns unit vectors."""
    embedder = semantic.local_embedder()
    vectors = embedder.embed(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] == pytest.approx(0.6660, abs=2e-3)
    assert sims[0, 2] == pytest.approx(0.1046, abs=2e-3)
    assert sims[1, 2] == pytest.approx(0.1411, abs=2e-3)


@pytest.mark.django_db
def test_search_finds_messages_across_sessions_with_links_to_their_branch(user, endpoint_embeddings):
    """search_messages ranks the user's messages from every session and links each to its branch."""
    _, servers, (_, _, r3) = conversations_of(user)
    hits = search.search_messages(user=user, query="gunicorn error log", top_k=3)
    assert hits[0].content == "Then read gunicorn's error log."
    assert hits[0].session_id == str(servers.pk) and hits[0].run_id == str(r3.pk)
    assert hits[0].url == f"/memory/branch/{r3.pk}/#m-{hits[0].message_id}"
    assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score
    assert hits[0].as_dict()["created_at"]


@pytest.mark.django_db
def test_index_is_built_once_and_grows_with_new_messages(user, endpoint_embeddings):
    """The first search embeds the user's messages; later searches embed only new ones."""
    conversations_of(user)
    search.search_messages(user=user, query="bread", top_k=1)
    assert MessageEmbedding.objects.filter(owner=user).count() == 6
    RunFactory(session=SessionFactory(owner=user), turn=("a brand new topic: tax returns", None))
    hits = search.search_messages(user=user, query="tax returns", top_k=1)
    assert MessageEmbedding.objects.filter(owner=user).count() == 7
    assert hits[0].content == "a brand new topic: tax returns"


@pytest.mark.django_db
def test_other_users_and_deleted_sessions_never_appear(user, other_user, endpoint_embeddings):
    """Another user's messages and the user's deleted sessions are not searched."""
    cooking, _, _ = conversations_of(user)
    RunFactory(session=SessionFactory(owner=other_user), turn=("sourdough bread secrets of another user", None))
    hits = search.search_messages(user=user, query="sourdough bread", top_k=10)
    assert "sourdough bread secrets of another user" not in [h.content for h in hits]
    Session.objects.filter(pk=cooking.pk).update(deleted_at=cooking.created_at)
    hits = search.search_messages(user=user, query="sourdough bread", top_k=10)
    assert all(h.session_id != str(cooking.pk) for h in hits) and len(hits) == 4


@pytest.mark.django_db
def test_search_with_the_local_model(user, settings):
    """The default local embedder finds the messages about a failing web server for a query that
    shares no keyword with them, ahead of the cooking ones."""
    settings.ARBOR_EMBEDDINGS = "local"
    conversations_of(user)
    hits = search.search_messages(user=user, query="my web server says the backend is unreachable", top_k=2)
    assert {h.content for h in hits} == {"nginx returns 502 bad gateway", "Check that the upstream socket is up."}


@pytest.mark.django_db
def test_bad_queries_and_an_unavailable_embedder(user, settings):
    """Empty queries and out-of-range top_k are ValueErrors; ARBOR_EMBEDDINGS=off says so."""
    with pytest.raises(ValueError):
        search.search_messages(user=user, query="  ", top_k=5)
    with pytest.raises(ValueError):
        search.search_messages(user=user, query="x", top_k=0)
    settings.ARBOR_EMBEDDINGS = "off"
    with pytest.raises(semantic.SemanticSearchUnavailable, match="off"):
        search.search_messages(user=user, query="x", top_k=5)


@pytest.mark.django_db
def test_search_page_shows_results_and_links(client, user, endpoint_embeddings):
    """/memory/search/ lists hits with links to their branch; HTMX gets only the results partial."""
    conversations_of(user)
    client.force_login(user)
    response = client.get(reverse("memory:search"), {"q": "nginx 502"})
    body = response.content.decode()
    assert response.status_code == 200 and "nginx returns 502 bad gateway" in body and "/memory/branch/" in body
    partial = client.get(reverse("memory:search"), {"q": "nginx 502"}, headers={"HX-Request": "true"})
    assert partial.status_code == 200 and "<html" not in partial.content.decode()
    assert 'id="memory-results"' in partial.content.decode()
    keyword = client.get(reverse("memory:search"), {"q": "gunicorn", "mode": "keyword"})
    assert "gunicorn" in keyword.content.decode() and keyword.status_code == 200


@pytest.mark.django_db
def test_search_page_refuses_bad_input_and_explains_an_unavailable_embedder(client, user, settings):
    """Bad parameters get a 400 with a sentence; semantic search switched off gets a notice, not an error page."""
    client.force_login(user)
    assert client.get(reverse("memory:search"), {"q": "x", "mode": "psychic"}).status_code == 400
    assert client.get(reverse("memory:search"), {"q": "x", "k": "1000"}).status_code == 400
    settings.ARBOR_EMBEDDINGS = "off"
    response = client.get(reverse("memory:search"), {"q": "x"})
    assert response.status_code == 200 and "Semantic search is off" in response.content.decode()


@pytest.mark.django_db
def test_branch_page_shows_the_path_and_is_private(client, user, other_user):
    """The branch page shows the path from the root to the run, anchored by message; others get 404."""
    _, _, (_, r2, r3) = conversations_of(user)
    client.force_login(user)
    response = client.get(reverse("memory:branch", kwargs={"run_id": r3.pk}))
    body = response.content.decode()
    assert response.status_code == 200
    assert body.index("nginx returns 502") < body.index("and the upstream is gunicorn")
    assert f'id="m-{r3.messages.get(position=0).pk}"' in body
    assert reverse("conversations:run_rewind", kwargs={"session_id": r3.session_id, "run_id": r3.pk}) in body
    client.force_login(other_user)
    assert client.get(reverse("memory:branch", kwargs={"run_id": r3.pk})).status_code == 404
