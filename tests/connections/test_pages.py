"""The connections page: list, add (reachable or not), edit with a write-only key, refresh models,
health, models by hand, delete; htmx partials; another user's connection is 404, a shared one
read-only for users."""

from __future__ import annotations

import pytest
from django.urls import reverse

from connections.models import Connection, ConnectionModel
from tests.support.factories import ConnectionFactory

from .conftest import KEY_A, KEY_B

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def test_the_top_nav_links_the_connections_page(client, user):
    client.force_login(user)
    html = client.get(reverse("conversations:session_list")).content.decode()
    assert f'href="{reverse("connections:index")}"' in html and ">Connections<" in html


def test_adding_a_connection_checks_it_and_lists_its_models(client, user, second_server):
    client.force_login(user)
    response = client.post(reverse("connections:create"), {
        "name": "Bee", "base_url": second_server.base_url, "api_key": KEY_B, "enabled": "on", "timeout": "20"}, **HX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="listing"' in html and "<html" not in html  # the listing partial
    assert "Added “Bee”: 2 models listed." in html
    connection = Connection.objects.get(owner=user, name="Bee")
    assert connection.health == "ok" and connection.health_latency_ms is not None and connection.timeout == 20
    assert set(connection.models.values_list("name", flat=True)) == {"model-b", "big-b"}
    assert KEY_B not in html
    detail = client.get(reverse("connections:detail", args=[connection.pk])).content.decode()
    assert "model-b" in detail and "big-b" in detail and 'placeholder="32768"' in detail
    assert "set <span class=\"muted\">(stored encrypted; never shown)</span>" in detail and KEY_B not in detail


def test_an_unreachable_connection_is_saved_with_a_warning(client, user):
    client.force_login(user)
    response = client.post(reverse("connections:create"), {"name": "Nowhere", "base_url": "http://127.0.0.1:9/v1",
                                                          "enabled": "on"}, follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Saved, but the endpoint did not answer as expected: Could not reach http://127.0.0.1:9/v1" in html
    connection = Connection.objects.get(name="Nowhere")
    assert connection.health == "unreachable" and "Could not reach" in connection.models_error


def test_bad_input_is_refused_and_nothing_is_saved(client, user, conn_a):
    client.force_login(user)
    for data, message in (({"name": "x", "base_url": "ftp://nope"}, "base_url must be an http"),
                          ({"name": "Server A", "base_url": "http://h/v1"}, "already have a connection"),
                          ({"name": "x", "base_url": "http://h/v1", "extra_headers": "[1]"}, "JSON object"),
                          ({"name": "", "base_url": "http://h/v1"}, "This field is required")):
        response = client.post(reverse("connections:create"), data)
        assert response.status_code == 400, data
        assert message in response.content.decode(), data
        response = client.post(reverse("connections:create"), data, **HX)
        assert response.status_code == 200 and message in response.content.decode()  # htmx swaps only 2xx
    assert list(Connection.objects.filter(owner=user).values_list("name", flat=True)) == ["Server A"]


def test_editing_keeps_the_key_unless_a_new_one_is_given(client, user, conn_a, llm_server):
    client.force_login(user)
    url = reverse("connections:detail", args=[conn_a.pk])
    page = client.get(url).content.decode()
    assert KEY_A not in page and 'name="api_key"' in page and 'type="password"' in page
    response = client.post(url, {"name": "Renamed", "base_url": llm_server.base_url, "enabled": "on"})
    assert response.status_code == 302
    conn_a.refresh_from_db()
    assert conn_a.name == "Renamed" and conn_a.api_key == KEY_A and conn_a.timeout is None
    client.post(url, {"name": "Renamed", "base_url": llm_server.base_url, "api_key": "sk-new-one", "enabled": "on",
                      "extra_headers": '{"X-Team": "a"}'})
    conn_a.refresh_from_db()
    assert conn_a.api_key == "sk-new-one" and conn_a.headers == {"X-Team": "a"}
    client.post(url, {"name": "Renamed", "base_url": llm_server.base_url, "clear_api_key": "on",
                      "clear_extra_headers": "on"})  # no "enabled": unticked
    conn_a.refresh_from_db()
    assert conn_a.api_key == "" and conn_a.headers == {} and conn_a.enabled is False
    response = client.post(url, {"name": "Renamed", "base_url": "nope"})
    assert response.status_code == 400 and "base_url must be" in response.content.decode()


def test_refresh_health_and_models_by_hand_are_htmx_partials(client, user, conn_b, second_server):
    client.force_login(user)
    refreshed = client.post(reverse("connections:refresh", args=[conn_b.pk]), **HX)
    html = refreshed.content.decode()
    assert refreshed.status_code == 200 and 'id="models"' in html and "<html" not in html
    assert 'hx-swap-oob="true"' in html and "reachable" in html and "model-b" in html
    assert second_server.state.model_list_calls == 1
    health = client.post(reverse("connections:health", args=[conn_b.pk]), **HX).content.decode()
    assert "reachable" in health and " ms" in health
    assert second_server.state.model_list_calls == 2

    added = client.post(reverse("connections:model_add", args=[conn_b.pk]),
                        {"name": "typed-in", "context_window": "16384", "prompt_price": "0.5"}, **HX)
    assert added.status_code == 200 and "typed-in" in added.content.decode()
    model = ConnectionModel.objects.get(connection=conn_b, name="typed-in")
    assert model.added_by_hand and model.effective_context_window == 16384 and model.price.prompt == 0.5
    again = client.post(reverse("connections:model_add", args=[conn_b.pk]), {"name": "typed-in"}, **HX)
    assert "already has a model named" in again.content.decode()
    client.post(reverse("connections:model_edit", args=[conn_b.pk, model.pk]),
                {"context_window": "", "prompt_price": "", "completion_price": "4"}, **HX)
    model.refresh_from_db()
    assert model.context_window is None and model.prompt_price is None and model.completion_price == 4
    client.post(reverse("connections:model_delete", args=[conn_b.pk, model.pk]), **HX)
    assert not ConnectionModel.objects.filter(pk=model.pk).exists()


def test_deleting_hides_the_connection_but_keeps_its_row(client, user, conn_a):
    client.force_login(user)
    response = client.post(reverse("connections:delete", args=[conn_a.pk]), follow=True)
    assert "Deleted “Server A”" in response.content.decode()
    assert Connection.objects.get(pk=conn_a.pk).deleted_at is not None
    assert client.get(reverse("connections:detail", args=[conn_a.pk])).status_code == 404
    assert "Server A" not in client.get(reverse("connections:index")).content.decode()


def test_another_users_connection_is_404_and_a_shared_one_is_read_only(client, user, other_user, llm_server):
    theirs = ConnectionFactory(owner=other_user, name="Their secret endpoint", base_url=llm_server.base_url)
    model = ConnectionModel.objects.create(connection=theirs, name="m")
    shared = ConnectionFactory(owner=None, name="Team endpoint", base_url=llm_server.base_url)
    client.force_login(user)
    index = client.get(reverse("connections:index")).content.decode()
    assert "Their secret endpoint" not in index and "Team endpoint" in index and "default · environment" in index
    for name, args in (("detail", [theirs.pk]), ("delete", [theirs.pk]), ("health", [theirs.pk]),
                       ("refresh", [theirs.pk]), ("model_add", [theirs.pk]), ("model_edit", [theirs.pk, model.pk]),
                       ("model_delete", [theirs.pk, model.pk])):
        assert client.post(reverse(f"connections:{name}", args=args), {"name": "hijack"}).status_code == 404, name
    assert client.get(reverse("connections:detail", args=[theirs.pk])).status_code == 404
    assert Connection.objects.get(pk=theirs.pk).name == "Their secret endpoint"
    assert ConnectionModel.objects.filter(pk=model.pk).exists()
    page = client.get(reverse("connections:detail", args=[shared.pk])).content.decode()
    assert "only an administrator can change it" in page and "Refresh models" not in page
    assert client.post(reverse("connections:detail", args=[shared.pk]), {"name": "mine"}).status_code == 403
    assert client.post(reverse("connections:delete", args=[shared.pk])).status_code == 403
    assert Connection.objects.get(pk=shared.pk).deleted_at is None


def test_a_refresh_keeps_models_the_endpoint_stops_listing(client, user, conn_b, second_server):
    """Models are added and marked listed or not; a model no longer listed keeps its own settings."""
    client.force_login(user)
    client.post(reverse("connections:refresh", args=[conn_b.pk]))
    ConnectionModel.objects.filter(connection=conn_b, name="model-b").update(context_window=1000)
    listed = second_server.state.models
    second_server.state.models = [{"id": "model-b"}, {"id": "new-c", "context_length": 4096}]
    try:
        client.post(reverse("connections:refresh", args=[conn_b.pk]))
    finally:
        second_server.state.models = listed
    models = {m.name: m for m in ConnectionModel.objects.filter(connection=conn_b)}
    assert (models["model-b"].listed, models["model-b"].context_window) == (True, 1000)
    assert (models["big-b"].listed, models["big-b"].listed_context_window) == (False, 32768)
    assert (models["new-c"].listed, models["new-c"].effective_context_window) == (True, 4096)
    html = client.get(reverse("connections:detail", args=[conn_b.pk])).content.decode()
    assert "no longer listed" in html
