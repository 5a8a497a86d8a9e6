"""The one door for requests tocsin sends out: webhooks, WebSub verification and pushes,
browser push and `tocsin ingest URL` all go through `GuardedClient`.

Its resolver asks `targets.lookup` and hands the connector only addresses that passed
`targets.is_public` (unless the operator allows private ones), so the address checked is the
address connected to: a name that answers with a public address when a subscriber registers
and with 127.0.0.1 at delivery (DNS rebinding) is refused at delivery. Address literals,
which aiohttp connects to without asking a resolver, are checked before each request.
Redirects are never followed here; a caller that follows them sends each hop through
`request` again, so every hop is checked.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tocsin.service import targets
from tocsin.service.targets import PrivateAddress

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.abc import AbstractResolver

# aiohttp is imported when a request is first sent: it takes a tenth of a second or more to
# import, and a server that never sends anything (most never do) should not start slower.


def client_error() -> type[Exception]:
    """aiohttp's base error (for `except` clauses; imported when first asked for)."""
    import aiohttp

    return aiohttp.ClientError


@cache
def _resolver_class() -> type[AbstractResolver]:
    from aiohttp.abc import AbstractResolver, ResolveResult

    class GuardedResolver(AbstractResolver):
        """Resolves through `targets.lookup`, refusing answers that are not public
        addresses."""

        def __init__(self, allow_private: bool) -> None:
            self._allow_private = allow_private

        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET
                          ) -> list[ResolveResult]:
            found = await asyncio.to_thread(targets.public_addresses, host, port,
                                            allow_private=self._allow_private)
            return [ResolveResult(hostname=host, host=address, port=port, family=kind,
                                  proto=0, flags=socket.AI_NUMERICHOST)
                    for kind, address in found
                    if family in (socket.AF_UNSPEC, kind)]

        async def close(self) -> None:
            return None

    return GuardedResolver


def guarded_resolver(allow_private: bool) -> AbstractResolver:
    """A resolver through `targets.lookup` that refuses answers that are not public
    addresses (unless `allow_private`)."""
    return _resolver_class()(allow_private)  # type: ignore[call-arg]


class GuardedClient:
    """An aiohttp client that connects to public addresses only (unless `allow_private`),
    never follows redirects, and keeps at most `per_host` connections to one host (0: no
    limit). Make it inside the event loop that uses it; `close` when done."""

    def __init__(self, *, allow_private: bool, timeout: float, per_host: int = 0,
                 headers: dict[str, str] | None = None, auto_decompress: bool = True) -> None:
        self.allow_private = allow_private
        self._timeout = (timeout, min(timeout, 5.0))
        self._per_host = per_host
        self._headers = headers or {}
        self._auto_decompress = auto_decompress
        self._session: aiohttp.ClientSession | None = None

    def check(self, url: str) -> None:
        """PrivateAddress when `url`'s host is a private address literal (and not allowed)."""
        host = urlsplit(url).hostname or ""
        if not self.allow_private and targets.is_ip(host) and not targets.is_public(host):
            raise PrivateAddress(host, host)

    @asynccontextmanager
    async def request(self, method: str, url: str,
                      **options: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """The answer to one request (redirects not followed). PrivateAddress when the host
        is or resolves to a private address; aiohttp's errors and TimeoutError otherwise."""
        self.check(url)
        import aiohttp

        try:
            async with self._client().request(method, url, allow_redirects=False,
                                              **options) as answer:
                yield answer
        except aiohttp.ClientConnectorError as error:
            if isinstance(error.os_error, PrivateAddress):
                raise error.os_error from None
            raise

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=guarded_resolver(self.allow_private), limit=0,
                limit_per_host=self._per_host, ttl_dns_cache=60)
            total, connect = self._timeout
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=total,
                                                                   connect=connect),
                headers=self._headers,
                auto_decompress=self._auto_decompress)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
