"""Where a connection may send requests (server-side request forgery guard).

A connection made by a user who is not an administrator is **restricted**: its host is resolved
and every address it resolves to must be public (:func:`refusal`). Refused: loopback
(127.0.0.0/8, ::1), private (10/8, 172.16/12, 192.168/16, fc00::/7 incl. fd00::/8), link-local
(169.254/16 with the cloud metadata address 169.254.169.254, fe80::/10), shared (100.64/10),
multicast, reserved, unspecified (0.0.0.0, ::) and broadcast addresses, IPv4 embedded in IPv6
(``::ffff:127.0.0.1``, ``64:ff9b::a9fe:a9fe``), and the metadata host names of the clouds
(:data:`METADATA_HOSTS`). Decimal and hex forms (``2130706433``, ``0x7f000001``, ``0x7f.1``) are
what the resolver makes of them: 127.0.0.1, refused. The classification is Python's
:mod:`ipaddress` (the IANA special-purpose registries, RFC 6890).

With ``ARBOR_CONNECTION_PUBLIC_ADDRESSES = False`` public addresses are refused too (only the
allowed networks remain: an air-gapped site, or the API fuzz tests).

Exceptions: addresses in ``ARBOR_CONNECTION_ALLOWED_NETWORKS`` (:func:`allowed_networks`), and
connections that are not restricted (the default connection, shared ones, which only administrators
make, and those an administrator marked ``trusted``).

The check is made when a connection is saved and again on **every request** by
:class:`GuardedTransport`, which connects to the address it checked (the host name still goes in
``Host`` and in TLS's SNI and certificate check), so a DNS answer that changes between the check
and the connection (DNS rebinding) cannot switch it. Redirects are not followed (the client is made
with ``follow_redirects=False``, and a redirect that is followed anyway is checked like any request).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from urllib.parse import urlsplit

import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Host names of cloud instance metadata services (refused without resolving them).
METADATA_HOSTS = frozenset({
    "metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal",
    "metadata.azure.com", "metadata.tencentyun.com",
})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
GENERIC_REFUSAL = ("This address is not allowed for a connection: it is not a public address. "
                   "An administrator can allow its network (ARBOR_CONNECTION_ALLOWED_NETWORKS) "
                   "or mark the connection trusted.")


class AddressRefused(OSError):
    """A restricted connection's host is, or resolves to, an address it may not reach (the SDK
    reports it as a connection error, as any failure to connect)."""


@dataclass(frozen=True)
class Allowed:
    """One entry of ``ARBOR_CONNECTION_ALLOWED_NETWORKS``: a network and, optionally, one port."""

    network: IPNetwork
    port: int | None = None

    def admits(self, address: IPAddress, port: int) -> bool:
        return address in self.network and (self.port is None or self.port == port)


def _entry(text: str) -> Allowed:
    """``10.0.0.0/8``, ``127.0.0.1:8001``, ``10.0.0.0/8:443``, ``::1``, ``[::1]:8001``, ``[fd00::/8]:80``."""
    text = text.strip()
    port = None
    if text.startswith("["):
        inner, _, rest = text[1:].partition("]")
        text, port = inner, int(rest[1:]) if rest.startswith(":") else None
    elif text.count(":") == 1:
        text, raw_port = text.split(":")
        port = int(raw_port)
    return Allowed(ipaddress.ip_network(text, strict=False), port)


def _default_entries() -> str:
    """The local model's address: OPENAI_BASE_URL's host (each address it resolves to) and port."""
    parts = urlsplit(settings.OPENAI_BASE_URL)
    if not parts.hostname:
        return ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return ",".join(f"[{a}]:{port}" for a in _resolve(parts.hostname, port, raise_errors=False))


@lru_cache(maxsize=16)
def _parse(spec: str) -> tuple[Allowed, ...]:
    return tuple(_entry(item) for item in spec.split(",") if item.strip())


def allowed_networks() -> tuple[Allowed, ...]:
    """The networks (and ports) restricted connections may reach besides public addresses:
    ``ARBOR_CONNECTION_ALLOWED_NETWORKS`` (comma-separated, entries as :func:`_entry`); when it
    is not set (None), the local model's address and port (OPENAI_BASE_URL's); ``""``: none.
    Raises ValueError for a malformed entry."""
    spec = getattr(settings, "ARBOR_CONNECTION_ALLOWED_NETWORKS", None)
    return _parse(_default_entries() if spec is None else spec)


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4 address embedded in IPv6 (mapped ``::ffff:a.b.c.d`` or NAT64 ``64:ff9b::/96``) as IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def refusal(address: IPAddress) -> str:
    """Why a restricted connection may not reach ``address`` ("" when it may: a public address)."""
    address = _plain(address)
    for reason, hit in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                        ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
                        ("private", address.is_private), ("reserved", address.is_reserved)):
        if hit:
            return reason
    return "" if address.is_global else "not public"


def _resolve(host: str, port: int, *, raise_errors: bool = True) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        if raise_errors:
            raise
        return []
    seen: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


def check_host(host: str, port: int) -> IPAddress:
    """The address a restricted connection to ``host``:``port`` connects to: the first one it
    resolves to, when every one is allowed. Raises :class:`AddressRefused` (with the generic
    reason: which rule refused it is not shown) and ``OSError`` when the name does not resolve."""
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_HOSTS:
        raise AddressRefused(GENERIC_REFUSAL)
    addresses = _resolve(name, port)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    allowed = allowed_networks()
    public = getattr(settings, "ARBOR_CONNECTION_PUBLIC_ADDRESSES", True)
    for address in addresses:
        admitted = any(entry.admits(_plain(address), port) or entry.admits(address, port) for entry in allowed)
        if (refusal(address) or not public) and not admitted:
            raise AddressRefused(GENERIC_REFUSAL)
    return addresses[0]


def check_url(url: str) -> IPAddress:
    """:func:`check_host` for an ``http(s)`` URL's host and port (80/443 when not given)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return check_host(parts.hostname or "", port)


def _guarded(transport_base: type) -> type:
    class GuardedTransport(transport_base):
        """An HTTP transport for restricted connections: each request's host is checked
        (:func:`check_host`) and the connection goes to the address checked, with the host name
        kept for ``Host``, SNI and the certificate. Refused and unresolvable hosts raise
        :class:`AddressRefused` / ``OSError`` before anything is sent."""

        def handle_request(self, request):
            host = request.url.host
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            address = check_host(host, port)
            if str(address) != host.strip("[]"):
                request.headers.setdefault("Host", request.url.netloc.decode("ascii"))
                if request.url.scheme == "https":
                    request.extensions = {**request.extensions, "sni_hostname": host}
                request.url = request.url.copy_with(host=str(address))
            return super().handle_request(request)

    return GuardedTransport


@lru_cache(maxsize=4)
def transport_class(http: ModuleType = httpx) -> type:
    """The guarded transport for the HTTP library ``http`` (``httpx``, or ``httpx2`` under openai 3.x)."""
    return _guarded(http.HTTPTransport)


def guarded_http_client(http: ModuleType = httpx, timeout=None):
    """An ``http.Client`` (``http``: the SDK's HTTP library) for the SDK's ``http_client``: the
    guarded transport, no redirects."""
    return http.Client(transport=transport_class(http)(), follow_redirects=False, timeout=timeout)
