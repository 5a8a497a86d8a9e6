"""WebSub content distribution from the delivery queue: after each event that may change a
feed, each subscriber of a feed gets the feed's current bytes, if they moved since the last
push, signed with the subscriber's secret (X-Hub-Signature: sha256=…).

The bytes come from a FeedSource that renders the feed from the store at the moment of
delivery exactly as the servers render it (tocsin.web.websub.StoreFeeds; whoever starts the
worker hands it in), so a push never carries an older version than the one the event
announced, nor other bytes than a reader of the topic gets.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Engine

from tocsin import settings
from tocsin.domain.notify import Job, Outcome
from tocsin.notify.webhook import Poster
from tocsin.render.urls import WEBSUB_HUB
from tocsin.service import websub


class Feed(Protocol):
    """A feed as a reader of its topic would get it now."""

    @property
    def body(self) -> bytes: ...

    @property
    def media_type(self) -> str: ...

    @property
    def etag(self) -> str:
        """The strong validator the servers send with these bytes."""
        ...


class FeedSource(Protocol):
    def feed(self, topic: str) -> Feed | None:
        """The feed at `topic` (an absolute URL of this site), or None when this site has
        no such feed. Called in a worker thread: it may read the store."""
        ...


class WebSubSender:
    def __init__(self, engine: Engine, config: settings.Settings, feeds: FeedSource, *,
                 per_endpoint: int = 16, timeout: float = 10.0) -> None:
        self._engine = engine
        self._config = config
        self._feeds = feeds
        self._poster = Poster(allow_private=config.allow_private_targets,
                              per_endpoint=per_endpoint, timeout=timeout)

    async def send(self, job: Job) -> Outcome:
        now = datetime.now(UTC)
        subscription_id = job.subscription_id or ""
        found = await asyncio.to_thread(websub.get, self._engine, subscription_id, now=now)
        if found is None:
            return Outcome(False, "the WebSub subscription has ended", gone=True)
        site = self._config.public_url
        if not found.topic.startswith(site + "/"):
            return Outcome(False, f"the topic is no longer a feed of {site}", permanent=True)
        doc = await asyncio.to_thread(self._feeds.feed, found.topic)
        if doc is None:
            return Outcome(False, f"{found.topic} is no longer a feed of {site}", permanent=True)
        if doc.etag == found.last_etag or not await asyncio.to_thread(
                websub.claim, self._engine, found, doc.etag):
            return Outcome(True, "this version of the feed was pushed already")
        headers = {"Content-Type": doc.media_type,
                   "Link": f'<{site}{WEBSUB_HUB}>; rel="hub", <{found.topic}>; rel="self"'}
        if found.secret:
            digest = hmac.new(found.secret.encode(), doc.body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = f"sha256={digest}"
        try:
            outcome = await self._poster.post(found.callback, doc.body, headers)
        except asyncio.CancelledError:
            # The worker is stopping: give the claim back, or this version would count as
            # pushed and the retry would skip it.
            await asyncio.shield(asyncio.to_thread(websub.release, self._engine, found,
                                                   doc.etag))
            raise
        if not outcome.delivered:
            await asyncio.to_thread(websub.release, self._engine, found, doc.etag)
        await asyncio.to_thread(websub.record, self._engine, found.id, outcome.detail,
                                now=datetime.now(UTC), gone=outcome.gone)
        return outcome

    async def close(self) -> None:
        await self._poster.close()
