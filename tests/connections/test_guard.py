"""Where a user's connection may send requests (server-side request forgery): internal addresses in
every spelling are refused for a user who is not an administrator (400, nothing saved, no request
made); an administrator's allowed network and a trusted connection reach them; every request is
checked again and goes to the address checked (a DNS answer that changes cannot switch it); no
redirect is followed. Only loopback is ever connected to."""

from __future__ import annotations

import ipaddress
import socket

import httpx
import pytest

from connections import guard
from connections.models import Connection
from connections.services import connection_check, connection_create
from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

REFUSED = ["127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
           "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "fd00::1", "fc00::5", "fe80::1", "::",
           "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "fd00:ec2::254"]


@pytest.mark.parametrize("address", REFUSED)
def test_internal_addresses_are_refused(address):
    assert guard.refusal(ipaddress.ip_address(address)) != ""


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_pass(address):
    assert guard.refusal(ipaddress.ip_address(address)) == ""


def _spellings(port: int) -> list[str]:
    """Loopback and internal addresses as a user may write them."""
    return [
        f"http://127.0.0.1:{port}/v1", f"http://localhost:{port}/v1", f"http://2130706433:{port}/v1",
        f"http://0x7f000001:{port}/v1", f"http://0x7f.1:{port}/v1", f"http://0177.0.0.1:{port}/v1",
        f"http://127.1:{port}/v1", f"http://[::1]:{port}/v1", f"http://[::ffff:127.0.0.1]:{port}/v1",
        f"http://0.0.0.0:{port}/v1", "http://169.254.169.254/latest/meta-data", "http://metadata.google.internal/v1",
        "http://METADATA.google.internal./v1", "http://10.0.0.1/v1", "http://[fd00::1]/v1", "http://192.168.0.1/v1",
    ]


@pytest.fixture
def nothing_allowed(settings):
    settings.ARBOR_CONNECTION_ALLOWED_NETWORKS = ""


def _port(server) -> int:
    return server.httpd.server_address[1]


def test_a_user_cannot_save_a_connection_to_an_internal_address(api, user, llm_server, nothing_allowed):
    for url in _spellings(_port(llm_server)):
        response = api.post("/api/connections", {"name": "inside", "base_url": url}, content_type="application/json")
        assert response.status_code == 400, (url, response.content)
        assert "not a public address" in response.json()["detail"], url
    assert not Connection.objects.filter(owner=user).exists()
    assert llm_server.state.model_list_calls == 0  # nothing was sent


def test_a_user_cannot_move_a_connection_inside(api, user, llm_server, nothing_allowed):
    connection = ConnectionFactory(owner=user, name="mine", base_url="http://8.8.8.8:9/v1")
    response = api.patch(f"/api/connections/{connection.pk}", {"base_url": llm_server.base_url},
                         content_type="application/json")
    assert response.status_code == 400
    connection.refresh_from_db()
    assert connection.base_url == "http://8.8.8.8:9/v1"
    assert llm_server.state.model_list_calls == 0


def test_a_user_cannot_mark_a_connection_trusted(api, user, llm_server, nothing_allowed):
    response = api.post("/api/connections", {"name": "t", "base_url": llm_server.base_url, "trusted": True},
                        content_type="application/json")
    assert response.status_code == 403
    assert not Connection.objects.filter(owner=user).exists()


def test_an_allowed_network_is_reachable(api, user, llm_server, settings):
    settings.ARBOR_CONNECTION_ALLOWED_NETWORKS = f"10.0.0.0/8, 127.0.0.1:{_port(llm_server)}"
    response = api.post("/api/connections", {"name": "local", "base_url": llm_server.base_url},
                        content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["warning"] == ""
    assert [m["name"] for m in response.json()["models"]] == ["fake-model"]
    other_port = api.post("/api/connections", {"name": "other port", "base_url": "http://127.0.0.1:9/v1"},
                          content_type="application/json")
    assert other_port.status_code == 400  # the entry names one port


def test_the_default_allows_the_local_models_address_only(settings, llm_server):
    settings.ARBOR_CONNECTION_ALLOWED_NETWORKS = None
    settings.OPENAI_BASE_URL = llm_server.base_url
    assert guard.check_url(llm_server.base_url) == ipaddress.ip_address("127.0.0.1")
    with pytest.raises(guard.AddressRefused):
        guard.check_url("http://127.0.0.1:9/v1")


def test_an_administrator_may_trust_a_connection(client, superuser, llm_server, nothing_allowed):
    client.force_login(superuser)
    refused = client.post("/api/connections", {"name": "inside", "base_url": llm_server.base_url},
                          content_type="application/json")
    assert refused.status_code == 400
    trusted = client.post("/api/connections", {"name": "inside", "base_url": llm_server.base_url, "trusted": True},
                          content_type="application/json")
    assert trusted.status_code == 201, trusted.content
    assert trusted.json()["trusted"] is True and trusted.json()["warning"] == ""


def test_every_request_is_checked_again(user, llm_server, settings):
    """A connection saved while its network was allowed cannot be used once it is not."""
    settings.ARBOR_CONNECTION_ALLOWED_NETWORKS = f"127.0.0.1:{_port(llm_server)}"
    saved = connection_create(user=user, name="later", base_url=llm_server.base_url)
    assert saved.warning == ""
    calls = llm_server.state.model_list_calls
    settings.ARBOR_CONNECTION_ALLOWED_NETWORKS = ""
    check = connection_check(connection=saved.connection)
    assert check.health == "unreachable"
    assert llm_server.state.model_list_calls == calls


def test_the_transport_connects_to_the_address_it_checked(monkeypatch, llm_server, settings):
    """DNS rebinding: the name resolves to the allowed loopback address once, then to another;
    the request still reaches the loopback server, with the name in ``Host``."""
    settings.ARBOR_CONNECTION_ALLOWED_NETWORKS = f"127.0.0.1:{_port(llm_server)}"
    real = socket.getaddrinfo
    answers = []

    def rebinding(host, port, *args, **kwargs):
        if host == "model.rebind.test":
            answers.append(host)
            address = "127.0.0.1" if len(answers) == 1 else "192.0.2.1"  # TEST-NET-1: never answers
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with guard.guarded_http_client(httpx, httpx.Timeout(5.0)) as client:
        response = client.get(f"http://model.rebind.test:{_port(llm_server)}/v1/models")
    assert response.status_code == 200
    assert response.json()["data"][0]["id"] == "fake-model"
    assert len(answers) == 1  # resolved once, by the check; the connection went to what it checked
    with guard.guarded_http_client(httpx, httpx.Timeout(5.0)) as client, pytest.raises(guard.AddressRefused):
        client.get(f"http://model.rebind.test:{_port(llm_server)}/v1/models")  # now 192.0.2.1: refused


def test_redirects_are_not_followed(llm_server, settings):
    settings.ARBOR_CONNECTION_ALLOWED_NETWORKS = f"127.0.0.1:{_port(llm_server)}"
    llm_server.state.models_redirect = "http://169.254.169.254/latest/meta-data"
    with guard.guarded_http_client(httpx, httpx.Timeout(5.0)) as client:
        response = client.get(f"{llm_server.base_url}/models")
        assert response.status_code == 302
        with pytest.raises(guard.AddressRefused):  # followed on purpose: the hop is checked too
            client.get(f"{llm_server.base_url}/models", follow_redirects=True)


def _listening(kind: str):
    """A loopback port that is closed, silent (accepts, says nothing) or not HTTP (a banner)."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if kind == "closed":
        server.close()
        return port, None
    server.listen(8)

    def serve():
        while True:
            try:
                peer, _ = server.accept()
            except OSError:
                return
            if kind == "banner":
                peer.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                peer.close()

    threading.Thread(target=serve, daemon=True).start()
    return port, server


def test_every_unreachable_port_gives_the_same_message(user, settings):
    """Closed, silent and not-HTTP ports (and a refused address) read the same to a user."""
    settings.ARBOR_CONNECTION_CHECK_SECONDS = 1.0
    messages, servers = set(), []
    for kind in ("closed", "silent", "banner", "refused"):
        port, server = _listening("closed" if kind == "refused" else kind)
        servers.append(server)
        settings.ARBOR_CONNECTION_ALLOWED_NETWORKS = "" if kind == "refused" else f"127.0.0.1:{port}"
        connection = ConnectionFactory(owner=user, name=kind, base_url=f"http://127.0.0.1:{port}/v1")
        check = connection_check(connection=connection)
        assert check.health == "unreachable", kind
        messages.add(check.message.replace(str(port), "PORT"))
    assert messages == {"Could not reach http://127.0.0.1:PORT/v1."}
    for server in servers:
        if server is not None:
            server.close()


def test_only_ids_that_look_like_model_names_are_listed(user, settings):
    from tests.llm_server import FakeLLMServer

    ids = ["gpt-4o-mini", "meta-llama/Llama-3.1-8B-Instruct", "llama3:8b", "<script>alert(1)</script>",
           "root:x:0:0:root:/root:/bin/bash\n", "a b c", "x" * 300, "", "-flag", "SSH-2.0-OpenSSH"]
    server = FakeLLMServer(models=ids).start()
    try:
        settings.ARBOR_CONNECTION_ALLOWED_NETWORKS = f"127.0.0.1:{_port(server)}"
        saved = connection_create(user=user, name="lister", base_url=server.base_url)
        names = sorted(saved.connection.models.values_list("name", flat=True))
    finally:
        server.stop()
    assert names == ["SSH-2.0-OpenSSH", "gpt-4o-mini", "llama3:8b", "meta-llama/Llama-3.1-8B-Instruct"]


def test_public_addresses_can_be_refused_too(settings):
    settings.ARBOR_CONNECTION_ALLOWED_NETWORKS = "127.0.0.0/8"
    settings.ARBOR_CONNECTION_PUBLIC_ADDRESSES = False
    with pytest.raises(guard.AddressRefused):
        guard.check_url("http://8.8.8.8/v1")  # an IP literal: nothing is resolved or sent
    assert guard.check_url("http://127.0.0.1:9/v1") == ipaddress.ip_address("127.0.0.1")
