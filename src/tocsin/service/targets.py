"""Where tocsin may send: http(s) addresses that resolve to public hosts only, unless the
operator allows private ones (TOCSIN_ALLOW_PRIVATE_TARGETS). Checked when a subscriber
registers and again, against the addresses actually connected to, at each request
(tocsin.service.outgoing connects only to addresses `public_addresses` returned)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from tocsin.domain.errors import InvalidInput

PRIVATE_FIX = "use a public address, or set TOCSIN_ALLOW_PRIVATE_TARGETS=1"

Lookup = Callable[[str, int], list[tuple[socket.AddressFamily, str]]]
"""A resolver: (host, port) → [(address family, address)]; OSError when the name does not
resolve."""


def system_lookup(host: str, port: int) -> list[tuple[socket.AddressFamily, str]]:
    """The operating system's answer for `host` (getaddrinfo, TCP)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(socket.AddressFamily(info[0]), str(info[4][0])) for info in infos]


lookup: Lookup = system_lookup
"""The one resolver every outgoing path asks; tests replace it to simulate DNS rebinding."""


class PrivateAddress(OSError):
    """A host name or address that is not public, where only public ones are allowed."""

    def __init__(self, host: str, address: str) -> None:
        self.host = host
        self.address = address
        super().__init__(f"{host} is a private address" if host == address
                         else f"{host} resolves to a private address ({address})")


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")
_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped and -compatible, NAT64
    (64:ff9b::/96 and 64:ff9b:1::/48, RFC 6052), 6to4 (2002::/16) and Teredo (2001::/32,
    server and client)."""
    raw = ip.packed
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _COMPATIBLE or ip in _NAT64:
        return [ipaddress.IPv4Address(raw[12:])]
    if ip in _NAT64_LOCAL:
        return [ipaddress.IPv4Address(raw[6:8] + raw[9:11])]
    if ip in _SIX_TO_FOUR:
        return [ipaddress.IPv4Address(raw[2:6])]
    if ip in _TEREDO and ip.teredo is not None:
        return list(ip.teredo)
    return []


def is_public(address: str) -> bool:
    """True for a globally routable address (not loopback, private, link-local, …); an IPv6
    address that embeds an IPv4 one is public only when that IPv4 address is too."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if ip.ipv4_mapped is not None:
            return _global(inner[0])
        if ip in _COMPATIBLE or ip in _NAT64_LOCAL:
            return False  # deprecated / local-use: never a public destination
        if not all(_global(v4) for v4 in inner):
            return False
    return _global(ip)


def _global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


def is_ip(host: str) -> bool:
    """Whether `host` is an address literal rather than a name."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def public_addresses(host: str, port: int, *,
                     allow_private: bool) -> list[tuple[socket.AddressFamily, str]]:
    """The addresses to connect to for `host`: all of them public (unless allowed);
    PrivateAddress naming the first that is not, OSError when the name does not resolve."""
    if is_ip(host):
        ip = ipaddress.ip_address(host.split("%", 1)[0])
        found = [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, host)]
    else:
        found = lookup(host, port)
    if not allow_private:
        for _, address in found:
            if not is_public(address):
                raise PrivateAddress(host, address)
    return found


def check_url(url: str, *, what: str, allow_private: bool) -> str:
    """An absolute http(s) URL whose host resolves to public addresses only (unless allowed);
    InvalidInput naming `what` otherwise."""
    if len(url) > 2000:
        raise InvalidInput(f"{what} is {len(url)} characters long", "give a URL of at most 2000")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"{what} {url!r} is not a valid URL",
                           "give an absolute http(s) URL, e.g. https://example.org/hook") from None
    try:
        (parts.hostname or "").encode("idna")
    except UnicodeError:
        raise InvalidInput(f"{what} {url!r} has a host name that is not valid",
                           "check the host name: labels of 1-63 letters, digits or '-'") from None
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise InvalidInput(f"{what} {url[:200]!r} has spaces or control characters",
                           "give the URL without spaces; percent-encode them") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{what} {url!r} is not an absolute http(s) URL",
                           "give an absolute http(s) URL, e.g. https://example.org/hook")
    if parts.username or parts.password:
        raise InvalidInput(f"{what} {url!r} carries a user name or password",
                           "leave credentials out of the URL; deliveries are signed instead")
    if allow_private:
        return url
    default = 443 if parts.scheme == "https" else 80
    try:
        public_addresses(parts.hostname, port or default, allow_private=False)
    except PrivateAddress as error:
        raise InvalidInput(f"{what} {url!r} points at a private address ({error.address})",
                           PRIVATE_FIX) from None
    except OSError:
        raise InvalidInput(f"{what} host {parts.hostname!r} does not resolve",
                           "check the host name") from None
    return url
