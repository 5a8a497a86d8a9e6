"""The ASGI application. Public documents are looked up as pre-rendered bytes in the current
snapshot: no validation, serialisation or database access on that path."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.routing import Route

from tocsin import settings
from tocsin.domain.errors import TocsinError
from tocsin.domain.times import parse_instant
from tocsin.render import pages, urls
from tocsin.render.console import CONSOLE
from tocsin.render.errors import error_body, status_of
from tocsin.store.database import connect
from tocsin.web import authority, console, subscribe, subscriptions_api, websub
from tocsin.web.documents import HTML, JSON, Document, document
from tocsin.web.guard import SECURITY_HEADERS, Limiter, Proxies, SignIns
from tocsin.web.live import Holder
from tocsin.web.site import negotiate, query_language

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("tocsin.web")
NEGOTIATED = ("/areas/", "/declarations/", "/map/", "/badge/")
ALLOW = b"GET, HEAD, OPTIONS"
CORS = [(b"access-control-allow-origin", b"*"),
        (b"access-control-expose-headers", b"ETag, Last-Modified")]
PREFLIGHT = [(b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
             (b"access-control-allow-headers", b"If-None-Match, Last-Event-ID, Accept-Language")]
PROCESS_HEADER_SWITCH = "TOCSIN_TEST_PROCESS_HEADER"
PAST_MAX_AGE = 86_400
MAX_AGE = 60


def is_negotiated(path: str) -> bool:
    """Unprefixed page paths answer in the reader's language."""
    return path in ("/", "/history", "/search") or path.startswith(NEGOTIATED)


class TocsinApp:
    """Serves the holder's current snapshot; keeps it current while running."""

    def __init__(self, holder: Holder, private: Callable[[Scope, Receive, Send],
                                                         Awaitable[None]] | None = None,
                 *, process_header: bool = False, proxies: Proxies | None = None) -> None:
        self.holder = holder
        self.private = private
        self.proxies = proxies or Proxies(())
        """Whose forwarding headers the private app believes (the public one needs none)."""
        self.process_header = process_header
        """Tests only: name the answering process, to tell a server's workers apart."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.process_header:
            send = _with_process(send)
        path: str = scope["path"]
        if self.private is not None and is_private(path):
            await self.private(self.proxies.resolve(scope), receive, _secured(send))
            return
        if scope["method"] == "OPTIONS":  # CORS preflight: any origin may read
            await send({"type": "http.response.start", "status": 204, "headers": [
                *CORS, *PREFLIGHT, (b"allow", ALLOW), (b"access-control-max-age", b"86400")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["method"] not in ("GET", "HEAD"):
            await self._send(send, scope, _json_error(405, f"{scope['method']} is not allowed "
                                                     f"on {path}", "use GET"), status=405,
                             extra=[(b"allow", ALLOW)])
            return
        if path == urls.EVENTS:
            await self._events(scope, receive, send)
            return
        snapshot = self.holder.current
        headers = _headers(scope)
        query: bytes = scope["query_string"]
        vary = is_negotiated(path)
        if vary:
            params = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            chosen = query_language(params) or negotiate(
                headers.get(b"accept-language", b"").decode("latin-1"))
            path = f"/{chosen}{path}"
        doc = None if query else snapshot.site.cached(path)
        status = 200
        if doc is None:
            try:
                params = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                # Off the event loop: a page that renders never holds up the answers that
                # are a look-up.
                doc = await asyncio.get_running_loop().run_in_executor(
                    None, snapshot.site.render, path, params)
            except TocsinError as error:
                status = status_of(error)
                doc = self._error(path, status, error)
            except Exception:
                log.exception("failed to render %s", path)
                status = 500
                doc = _json_error(500, "the server failed to render this document", None)
        max_age = (self._max_age(query, snapshot.built_at, snapshot.next_change)
                   if status == 200 else 0)
        await self._send(send, scope, doc, status=status, vary=vary, max_age=max_age,
                         if_none_match=headers.get(b"if-none-match"))

    def _max_age(self, query: bytes, built_at: datetime, next_change: datetime | None) -> int:
        """Seconds a cache may keep the answer: levels in the past never change (nothing is
        backdated); the present holds until the next change or for a minute."""
        at = next((v for k, v in parse_qsl(query.decode("latin-1")) if k == "at"),
                  None) if query else None
        if at is not None:
            try:
                return PAST_MAX_AGE if parse_instant(at) < built_at else MAX_AGE
            except TocsinError:
                return 0
        if next_change is None:
            return MAX_AGE
        seconds = int((next_change - datetime.now(UTC)).total_seconds())
        return max(0, min(MAX_AGE, seconds))

    def _error(self, path: str, status: int, error: TocsinError) -> Document:
        segments = [s for s in path.split("/") if s]
        if segments and segments[0] in urls.PAGE_LANGUAGES and not path.endswith(".svg"):
            ctx = pages.PageContext(lang=segments[0], at=self.holder.current.built_at,
                                    now=self.holder.current.built_at, time_travel=False)
            return document(pages.error_page(ctx, status, error.message), HTML,
                            self.holder.current.built_at)
        return _json_error(status, error.problem, error.fix)

    async def _send(self, send: Send, scope: Scope, doc: Document, *, status: int,
                    vary: bool = False, max_age: int = 0,
                    if_none_match: bytes | None = None,
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [
            (b"etag", doc.etag.encode()),
            (b"last-modified", doc.last_modified.encode()),
            (b"cache-control", f"public, max-age={max_age}".encode() if max_age
             else b"no-cache"),
            *CORS,
            *SECURITY_HEADERS,
            *(extra or ()),
        ]
        if vary:
            headers.append((b"vary", b"Accept-Language"))
        if status == 200 and if_none_match is not None and _matches(if_none_match, doc.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += [(b"content-type", doc.media_type.encode()),
                    (b"content-length", str(len(doc.body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else doc.body
        await send({"type": "http.response.body", "body": body})

    async def _events(self, scope: Scope, receive: Receive, send: Send) -> None:
        last_id = _headers(scope).get(b"last-event-id", b"").decode("latin-1") or None
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            *CORS,
            *SECURITY_HEADERS,
            (b"x-accel-buffering", b"no"),
        ]})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return

        async def pump() -> None:
            async for chunk in self.holder.broadcaster.stream(last_id):
                await send({"type": "http.response.body", "body": chunk.encode(),
                            "more_body": True})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(disconnected())]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.holder.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.holder.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def is_private(path: str) -> bool:
    """The authority API, the console, the WebSub hub, browser push registration and the
    subscription pages: answered by the private app, never cached or shared."""
    return (path.startswith(authority.PREFIX + "/") or path == authority.PREFIX
            or path == CONSOLE or path.startswith(CONSOLE + "/") or path == websub.HUB_PATH
            or subscriptions_api.is_push_path(path) or subscribe.is_subscribing(path))


def _secured(send: Send) -> Send:
    """Add the security headers to a private answer (the private headers come from it)."""
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = [*message.get("headers", []),
                                  *((k, v) for k, v in SECURITY_HEADERS if k not in names)]
        await send(message)
    return sending


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope["headers"]}


def _matches(if_none_match: bytes, etag: str) -> bool:
    wanted = etag.encode()
    return any(tag.strip().removeprefix(b"W/") in (wanted, b"*")
               for tag in if_none_match.split(b","))


def _json_error(status: int, message: str, fix: str | None) -> Document:
    body = json.dumps(error_body(status, message, fix), ensure_ascii=False,
                      separators=(",", ":"))
    return document(body, JSON, datetime.now(UTC))


def create_app(engine: Engine, *, rate_limit: int | None = None,
               trusted_proxies: tuple[settings.Network, ...] | None = None,
               process_header: bool = False) -> TocsinApp:
    """The application for one database; builds the first snapshot before returning.
    Unless given, the rate limit and the trusted proxies come from the environment.
    With `process_header`, every answer says which process gave it (X-Tocsin-Process)."""
    configured = settings.read() if rate_limit is None or trusted_proxies is None else None
    per_minute = rate_limit or (configured.rate_limit if configured else 300)
    if trusted_proxies is None:
        trusted_proxies = configured.trusted_proxies if configured else ()
    limiter = Limiter(per_minute=per_minute, burst=max(10, per_minute // 5))
    signins = SignIns(limiter)  # shared: a password reset by either door lifts the back-off
    holder = Holder(engine)
    hub = websub.Hub(engine, holder)
    private = Starlette(
        routes=[*authority.routes(authority.AuthorityApi(engine, limiter, signins)),
                *subscriptions_api.routes(engine, limiter),
                *subscribe.routes(engine, limiter),
                *console.routes(engine, limiter, signins),
                Route(websub.HUB_PATH, hub.endpoint, methods=["POST"])],
        exception_handlers={404: authority.not_found, 405: authority.not_found})
    return TocsinApp(holder, private, process_header=process_header,
                     proxies=Proxies(trusted_proxies))


def app_from_environment() -> TocsinApp:
    """Factory for `uvicorn --factory` and `tocsin serve --workers N`.
    TOCSIN_TEST_PROCESS_HEADER=1 (tests only, never in production) turns on X-Tocsin-Process."""
    return create_app(connect(settings.read().database_url),
                      process_header=os.environ.get(PROCESS_HEADER_SWITCH) == "1")


def _with_process(send: Send) -> Send:
    """`send`, adding the X-Tocsin-Process header (this process's id) to the answer."""
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()),
                                              (b"x-tocsin-process", str(os.getpid()).encode())]}
        await send(message)
    return sending
