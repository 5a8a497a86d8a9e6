"""tocsin as its own WebSub hub (W3C WebSub): subscribers confirm their intent, then every new
version of a feed is pushed to them, signed with their secret when they gave one.

Topics are the feeds' public URLs (TOCSIN_PUBLIC_URL + /feeds/…). The server verifies intent
through tocsin's guarded client (tocsin.service.outgoing: public addresses only, unless
allowed, checked at connection); the endpoint is rate-limited per client, at most
MAX_VERIFYING verifications run at once, and one callback host holds at most
MAX_PER_CALLBACK_HOST subscriptions. Pushes go through the notification workers' delivery
queue (tocsin.notify.websub), with retries, like every other delivery; `StoreFeeds` gives
the workers the feeds' bytes as the servers render them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tocsin import settings
from tocsin.domain.errors import InvalidInput, RateLimited, TocsinError
from tocsin.render import urls
from tocsin.render.errors import Refusal
from tocsin.service import targets, websub
from tocsin.service.outgoing import GuardedClient, client_error
from tocsin.service.targets import PrivateAddress
from tocsin.store import records
from tocsin.store.database import reading
from tocsin.web import snapshot as snapshots
from tocsin.web.authority import client_key, error_response, read_body
from tocsin.web.documents import Document
from tocsin.web.guard import Limiter
from tocsin.web.snapshot import Snapshot

HUB_PATH = urls.WEBSUB_HUB
FEEDS = "/feeds/"
TIMEOUT = 10.0
MAX_SECRET = 199
PER_MINUTE = 30
BURST = 10
"""Hub requests a client may make: each may start a verification request."""
MAX_VERIFYING = 64
"""Verifications under way at once, per server process."""
MAX_PER_CALLBACK_HOST = 100
"""Subscriptions (active or being verified) whose callbacks are on one host."""
log = logging.getLogger("tocsin.websub")
T = TypeVar("T")


def now() -> datetime:
    return datetime.now(UTC)


def check_callback(url: str, *, allow_private: bool) -> str:
    """A callback must be http(s) and, unless the operator allows it, not a private address."""
    return targets.check_url(url, what="hub.callback", allow_private=allow_private)


class Hub:
    def __init__(self, engine: Engine, holder: Any, *, limiter: Limiter | None = None,
                 max_verifying: int | None = None, per_callback_host: int | None = None
                 ) -> None:
        self.engine = engine
        self.holder = holder
        config = settings.read()
        self.public_url = config.public_url
        self.allow_private = config.allow_private_targets
        self.limiter = limiter or Limiter(per_minute=PER_MINUTE, burst=BURST)
        self.max_verifying = max_verifying or MAX_VERIFYING
        self.per_callback_host = per_callback_host or MAX_PER_CALLBACK_HOST
        self.tasks: set[asyncio.Task[None]] = set()
        self.verifying: dict[str, int] = {}
        """Verifications under way, by callback host."""

    @property
    def url(self) -> str:
        return self.public_url + HUB_PATH

    def _spawn(self, host: str, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        self.verifying[host] = self.verifying.get(host, 0) + 1

        def done(finished: asyncio.Task[None]) -> None:
            self.tasks.discard(finished)
            left = self.verifying.get(host, 1) - 1
            if left > 0:
                self.verifying[host] = left
            else:
                self.verifying.pop(host, None)

        task.add_done_callback(done)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(partial(fn, *args, **kwargs))

    def topic_path(self, topic: str) -> str:
        """The feed path of a topic URL; InvalidInput for anything this hub does not serve,
        or a query (e.g. ?lang=) the feed does not take, named in the message: what is
        accepted here is what the workers push (StoreFeeds renders the same)."""
        if not topic.startswith(self.public_url + FEEDS):
            raise InvalidInput(f"hub.topic {topic!r} is not a feed of this site",
                               f"use a feed URL under {self.public_url}{FEEDS}")
        self.topic_feed(topic)
        return topic[len(self.public_url):].split("?")[0]

    def topic_feed(self, topic: str) -> Document:
        """The feed a topic names, as a reader of it gets it now (its query honoured)."""
        path, _, query = topic[len(self.public_url):].partition("?")
        try:
            found: Document = self.holder.current.site.render(
                path, parse_qsl(query, keep_blank_values=True))
            return found
        except InvalidInput as error:
            raise InvalidInput(f"hub.topic {topic!r}: {error.problem}", error.fix) from None
        except TocsinError:
            raise InvalidInput(f"hub.topic {topic!r} is not a feed of this site",
                               f"use a feed URL under {self.public_url}{FEEDS}") from None

    # -- the endpoint -------------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        try:
            self.limiter.take(client_key(request), now())
            return await self._subscribe(request)
        except TocsinError as error:
            return error_response(error)

    async def _subscribe(self, request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise Refusal(415, "a WebSub request is a form",
                          "send application/x-www-form-urlencoded")
        fields = dict(parse_qsl((await read_body(request)).decode("utf-8", "replace"),
                                keep_blank_values=True))
        mode = fields.get("hub.mode", "")
        if mode not in ("subscribe", "unsubscribe"):
            raise InvalidInput(f"hub.mode {mode!r} is not subscribe or unsubscribe",
                               "send hub.mode=subscribe or hub.mode=unsubscribe")
        topic = fields.get("hub.topic", "")
        path = self.topic_path(topic)
        # The address check resolves the host name: off the event loop.
        callback = await self._run(check_callback, fields.get("hub.callback", ""),
                                   allow_private=self.allow_private)
        secret = fields.get("hub.secret") or None
        if secret is not None and len(secret.encode()) > MAX_SECRET:
            raise InvalidInput("hub.secret is longer than 199 bytes", "use a shorter secret")
        lease_text = fields.get("hub.lease_seconds")
        if lease_text is not None and not (lease_text.isascii() and lease_text.isdigit()
                                           and len(lease_text) <= 10):
            raise InvalidInput(f"hub.lease_seconds {lease_text!r} is not a whole number",
                               "give seconds, e.g. 864000")
        lease = websub.lease_for(int(lease_text) if lease_text else None)
        host = urlsplit(callback).hostname or ""
        if len(self.tasks) >= self.max_verifying:
            raise RateLimited(f"the hub is verifying {len(self.tasks)} subscriptions already",
                              "try again in a minute", retry_after=60)
        if mode == "subscribe":
            await self._check_room(topic, callback, host)
        self._spawn(host, self._verify(mode, topic, path, callback, secret,
                                       int(lease.total_seconds())))
        return Response(status_code=202, headers={"cache-control": "no-store"})

    async def _check_room(self, topic: str, callback: str, host: str) -> None:
        """RateLimited when the callback's host holds (or is being verified for) as many
        subscriptions as one host may; renewing one it holds is always allowed."""
        if await self._run(websub.exists, self.engine, topic, callback):
            return
        held = await self._run(websub.count_for_host, self.engine, host)
        if held + self.verifying.get(host, 0) >= self.per_callback_host:
            raise RateLimited(f"hub.callback host {host!r} has {self.per_callback_host} "
                              "subscriptions already",
                              "unsubscribe from topics you no longer need, or wait for "
                              "their leases to end", retry_after=3600)

    async def _verify(self, mode: str, topic: str, path: str, callback: str,
                      secret: str | None, lease_seconds: int) -> None:
        """Ask the subscriber to confirm; act only when it echoes the challenge."""
        challenge = secrets.token_urlsafe(24)
        query = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
        if mode == "subscribe":
            query["hub.lease_seconds"] = str(lease_seconds)
        joiner = "&" if urlsplit(callback).query else "?"
        client = GuardedClient(allow_private=self.allow_private, timeout=TIMEOUT)
        try:
            async with client.request("GET", callback + joiner + urlencode(query)) as answer:
                said = await answer.content.read(1024)
                confirmed = 200 <= answer.status < 300
        except (PrivateAddress, TimeoutError, client_error(), OSError) as error:
            log.info("verification of %s for %s failed: %s", callback, topic, error)
            return
        finally:
            await client.close()
        if not confirmed or said.decode("utf-8", "replace").strip() != challenge:
            log.info("%s did not confirm %s of %s", callback, mode, topic)
            return
        if mode == "unsubscribe":
            await self._run(websub.remove, self.engine, topic, callback)
            return
        try:
            etag = self.topic_feed(topic).etag
        except TocsinError as error:
            log.info("%s not subscribed to %s: %s", callback, topic, error)
            return
        try:
            await self._run(websub.activate, self.engine, topic, callback, secret,
                            websub.lease_for(lease_seconds), now=now(), etag=etag,
                            per_host=self.per_callback_host)
        except TocsinError as error:
            log.info("%s not subscribed to %s: %s", callback, topic, error)


class StoreFeeds:
    """The feeds as the servers render them, for the workers' WebSub pushes: from a snapshot
    of the store, made again when the store has moved since. Thread-safe."""

    def __init__(self, engine: Engine, config: settings.Settings) -> None:
        self._engine = engine
        self._config = config
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def feed(self, topic: str) -> Document | None:
        """The feed at the absolute URL `topic` (its ?lang= honoured as the servers do), or
        None when this site has no feed there."""
        site = self._config.public_url
        if not topic.startswith(site + FEEDS):
            return None
        path, _, query = topic[len(site):].partition("?")
        try:
            return self._current().site.render(path, parse_qsl(query, keep_blank_values=True))
        except TocsinError:
            return None

    def _current(self) -> Snapshot:
        with self._lock:
            with reading(self._engine) as conn:
                version = int(records.read_state(conn).version)
            if self._snapshot is None or self._snapshot.version != version:
                self._snapshot = snapshots.build(self._engine, prerender=False,
                                                 config=self._config)
            return self._snapshot
