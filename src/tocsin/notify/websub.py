"""WebSub content distribution from the delivery queue: after each event that may change a
feed, each subscriber of a feed gets the feed's current bytes, if they moved since the last
push, signed with the subscriber's secret (X-Hub-Signature: sha256=…).

The feed is rendered from the store at the moment of delivery, exactly as the servers render
it, so a push never carries an older version than the one the event announced.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime

from sqlalchemy import Engine

from tocsin import settings
from tocsin.domain.notify import Outcome
from tocsin.notify.jobs import Job
from tocsin.notify.webhook import Poster
from tocsin.service import websub
from tocsin.web import snapshot as snapshots
from tocsin.web.snapshot import Snapshot
from tocsin.web.websub import HUB_PATH


class WebSubSender:
    def __init__(self, engine: Engine, config: settings.Settings, *, per_endpoint: int = 16,
                 timeout: float = 10.0) -> None:
        self._engine = engine
        self._config = config
        self._poster = Poster(allow_private=config.allow_private_targets,
                              per_endpoint=per_endpoint, timeout=timeout)
        self._snapshot: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def send(self, job: Job) -> Outcome:
        now = datetime.now(UTC)
        subscription_id = job.subscription_id or ""
        found = await asyncio.to_thread(websub.get, self._engine, subscription_id, now=now)
        if found is None:
            return Outcome(False, "the WebSub subscription has ended", gone=True)
        site = self._config.public_url
        if not found.topic.startswith(site + "/"):
            return Outcome(False, f"the topic is no longer a feed of {site}", permanent=True)
        snapshot = await self._current()
        doc = snapshot.site.render(found.topic[len(site):])
        if doc.etag == found.last_etag or not await asyncio.to_thread(
                websub.claim, self._engine, found, doc.etag):
            return Outcome(True, "this version of the feed was pushed already")
        headers = {"Content-Type": doc.media_type,
                   "Link": f'<{site}{HUB_PATH}>; rel="hub", <{found.topic}>; rel="self"'}
        if found.secret:
            digest = hmac.new(found.secret.encode(), doc.body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = f"sha256={digest}"
        outcome = await self._poster.post(found.callback, doc.body, headers)
        if not outcome.delivered:
            await asyncio.to_thread(websub.release, self._engine, found, doc.etag)
        await asyncio.to_thread(websub.record, self._engine, found.id, outcome.detail,
                                now=datetime.now(UTC), gone=outcome.gone)
        return outcome

    async def _current(self) -> Snapshot:
        """The public snapshot as the store has it now (rebuilt when the store moved)."""
        async with self._lock:
            version, _, _ = await asyncio.to_thread(snapshots.read_version, self._engine)
            if self._snapshot is None or self._snapshot.version != version:
                self._snapshot = await asyncio.to_thread(
                    snapshots.build, self._engine, prerender=False, config=self._config)
            return self._snapshot

    async def close(self) -> None:
        await self._poster.close()
