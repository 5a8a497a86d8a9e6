"""Where tocsin may send: http(s) addresses that resolve to public hosts only, unless the
operator allows private ones (TOCSIN_ALLOW_PRIVATE_TARGETS). Checked when a subscriber
registers and again, against the addresses actually connected to, at each delivery."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from tocsin.domain.errors import InvalidInput

PRIVATE_FIX = "use a public address, or set TOCSIN_ALLOW_PRIVATE_TARGETS=1"


def is_public(address: str) -> bool:
    """True for a globally routable address (not loopback, private, link-local, …)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


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
        infos = socket.getaddrinfo(parts.hostname, port or default, type=socket.SOCK_STREAM)
    except OSError:
        raise InvalidInput(f"{what} host {parts.hostname!r} does not resolve",
                           "check the host name") from None
    for info in infos:
        address = str(info[4][0])
        if not is_public(address):
            raise InvalidInput(f"{what} {url!r} points at a private address ({address})",
                               PRIVATE_FIX)
    return url
