"""The notification worker: runs the term schedule, fans outbox events out into deliveries,
and makes the deliveries through their channels.

Any number of workers may run against one PostgreSQL database (`tocsin worker`); on one
machine `tocsin serve` runs one beside the web server. A worker sleeps until the store changes
or some delivery falls due (tocsin.store.changes), claims due deliveries in batches with a
lease, sends them concurrently, and records every attempt. Told to stop (SIGTERM, or its
parent gone), it claims nothing more, gives the attempts in flight STOP_GRACE seconds, and
records the rest as interrupted, so that they are sent again. Killed at any instant, it loses
nothing: its leases run out and another worker (or itself, restarted) takes them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, select

from tocsin import settings
from tocsin.domain import notify
from tocsin.domain.notify import Channel, Job, Links, Outcome, Subscription, SubscriptionStatus
from tocsin.domain.resolve import effective_levels
from tocsin.domain.text import pick
from tocsin.notify.webhook import WebhookSender
from tocsin.notify.websub import FeedSource, WebSubSender
from tocsin.render import urls
from tocsin.service import deliveries, keys, levels, retention, subscriptions
from tocsin.service.deliveries import Claimed, Result
from tocsin.service.queries import World, world_of
from tocsin.store import changes as store_changes
from tocsin.store import tables as t
from tocsin.store.database import reading

log = logging.getLogger("tocsin.notify")
IDLE_LOOK = 15.0
"""The longest sleep of an idle worker. A change to the store (a new event, a replay) or the
next due delivery wakes it sooner; this only bounds the cost of a lost signal."""
STOP_GRACE = 1.0
"""Seconds a stopping worker gives the attempts in flight before it cancels them."""
INTERRUPTED = "interrupted: the worker stopped before an answer came"
PARENT_LOOK = 1.0
"""Seconds between looks at whether the process that started this worker is still there
(where the kernel cannot tell it, see run_forever)."""


class Sender(Protocol):
    """A channel: makes one attempt at a delivery and says what came of it."""

    async def send(self, job: Job) -> Outcome: ...

    async def close(self) -> None: ...


@dataclass
class Tuning:
    batch: int = 500
    """Deliveries claimed at once."""
    first_batch: int = 25
    """Deliveries a lane claims first in a round, so that the first ones leave at once."""
    chunk: int = deliveries.FAN_OUT_CHUNK
    """Subscribers expanded per fan-out transaction."""
    first_chunk: int = 200
    """The first fan-out chunk of a round: small, so that sending starts at once."""
    lanes: int = 2
    """Batches in flight at once (one claims and records while another sends)."""
    concurrency: int = 256
    """Attempts in flight at once, across all endpoints."""
    per_endpoint: int = 32
    """Attempts in flight at once to one endpoint (scheme, host and port)."""
    timeout: float = 10.0
    lease: timedelta = field(default_factory=lambda: deliveries.LEASE)
    prune_first: float = 300.0
    """Seconds after start before the first prune (settings.Retention; tocsin prune): a
    worker restarted often still prunes, and a short-lived one never does."""
    prune_every: float = 3600.0
    """Seconds between prunes; each costs about what it deletes."""


def make_senders(engine: Engine, config: settings.Settings, tuning: Tuning,
                 feeds: FeedSource | None = None) -> dict[Channel, Sender]:
    """The channels this configuration can use: webhooks always; WebSub with the feeds to
    push (`feeds`); e-mail when an SMTP server is set; browser push when a VAPID key
    exists."""
    folder = Path(config.keys_dir)
    signer = keys.document_signer(folder)
    out: dict[Channel, Sender] = {
        Channel.WEBHOOK: WebhookSender(key=signer.private_key if signer else None,
                                       allow_private=config.allow_private_targets,
                                       per_endpoint=tuning.per_endpoint,
                                       timeout=tuning.timeout)}
    if feeds is not None:
        out[Channel.WEBSUB] = WebSubSender(engine, config, feeds,
                                           per_endpoint=tuning.per_endpoint,
                                           timeout=tuning.timeout)
    if config.smtp_url:
        from tocsin.notify.mail import MailSender, parse_smtp_url
        out[Channel.EMAIL] = MailSender(parse_smtp_url(config.smtp_url, config.mail_from),
                                        now=lambda: datetime.now(UTC))
    vapid = keys.vapid_key(folder, create=False)
    if vapid is not None:
        from tocsin.notify.push import PushSender
        out[Channel.PUSH] = PushSender(vapid, contact=config.push_contact,
                                       allow_private=config.allow_private_targets)
    return out


class Worker:
    def __init__(self, engine: Engine, config: settings.Settings, *,
                 senders: Mapping[Channel, Sender] | None = None, tuning: Tuning | None = None,
                 feeds: FeedSource | None = None, name: str | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine = engine
        self.config = config
        self.tuning = tuning or Tuning()
        self.senders = dict(senders) if senders is not None else make_senders(
            engine, config, self.tuning, feeds)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.clock = clock
        self._rng = random.Random()
        self._limit = asyncio.Semaphore(self.tuning.concurrency)
        self._world: tuple[int, World] | None = None
        self._described: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self._heard_cache: dict[tuple[int, str, tuple[str, ...], tuple[str, ...]],
                                list[dict[str, Any]]] = {}
        self._running = False
        self._stop = asyncio.Event()
        """Set when the worker should stop: no more claims, attempts get STOP_GRACE."""
        self._next_prune = time.monotonic() + self.tuning.prune_first
        self._pruning: asyncio.Future[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; then finish or give back what is in hand, and return."""
        self._running = True
        self._stop = stop
        changes = store_changes.watch(self.engine)  # before the first round: nothing missed
        log.info("notification worker %s started", self.name)
        try:
            while not stop.is_set():
                try:
                    busy = await self._round()
                    self._prune_when_due()
                    wait = 0.0 if busy else await asyncio.to_thread(self._idle_wait,
                                                                    IDLE_LOOK)
                except Exception:  # e.g. the database is restarting: keep trying
                    log.exception("the notification worker's round failed; retrying")
                    busy, wait = 0, 1.0
                if busy or stop.is_set():
                    continue
                waiters = [asyncio.ensure_future(changes.wait(wait)),
                           asyncio.ensure_future(stop.wait())]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
        finally:
            changes.close()
            if self._pruning is not None:  # it stops after the batch in hand
                await self._pruning
            self._running = False
            for sender in self.senders.values():
                await sender.close()

    async def once(self) -> int:
        """One round: the schedule, fan-out, then every delivery due now. Returns how much
        was done (0: idle). Outside `run`, the channels' connections are closed after it."""
        try:
            return await self._round()
        finally:
            if not self._running:
                for sender in self.senders.values():
                    await sender.close()

    async def _round(self) -> int:
        now = self.clock()
        done = 0
        changed = await asyncio.to_thread(levels.run_due, self.engine, now)
        done += len(changed or ())
        # Fan-out and sending overlap: each chunk of a large fan-out commits on its own, and
        # the lanes send what is there while the rest is written.
        fanning = asyncio.ensure_future(self._fan_out(now))
        lanes = [asyncio.ensure_future(self._lane(fanning)) for _ in range(self.tuning.lanes)]
        done += sum(await asyncio.gather(*lanes))
        done += await fanning
        return done

    async def _fan_out(self, now: datetime) -> int:
        steps = 0
        chunk = self.tuning.first_chunk
        # Each chunk commits on its own: a stopping worker leaves the rest to the next round.
        while not self._stop.is_set() and await asyncio.to_thread(
                deliveries.fan_out_step, self.engine, now, chunk=chunk) is not None:
            steps += 1
            chunk = self.tuning.chunk
        return steps

    def _prune_when_due(self) -> None:
        """Start pruning the notification bookkeeping once every `prune_every` seconds (an
        idle worker still looks every IDLE_LOOK). It runs beside the rounds, so that a long
        first prune of a large database never holds up a delivery."""
        if (time.monotonic() < self._next_prune or self._stop.is_set()
                or (self._pruning is not None and not self._pruning.done())):
            return
        self._next_prune = time.monotonic() + self.tuning.prune_every
        self._pruning = asyncio.ensure_future(self._prune())

    async def _prune(self) -> None:
        """One prune; stops between batches once the worker is told to stop. A failure is
        logged and tried again at the next turn."""
        try:
            pruned = await asyncio.to_thread(retention.prune, self.engine, now=self.clock(),
                                             keep=self.config.retention,
                                             halt=self._stop.is_set)
        except Exception:
            log.exception("pruning old deliveries and events failed; trying again later")
            return
        if any(pruned.as_json().values()):
            log.info("pruned %s", ", ".join(f"{n} {table}"
                                            for table, n in pruned.as_json().items()))

    def _idle_wait(self, poll: float) -> float:
        now = self.clock()
        due = [x for x in (deliveries.next_due(self.engine), levels.next_check(self.engine))
               if x is not None]
        if not due:
            return poll
        return max(0.0, min(poll, (min(due) - now).total_seconds()))

    async def _lane(self, fanning: asyncio.Future[int]) -> int:
        handled = 0
        limit = self.tuning.first_batch  # small at first: the first deliveries leave sooner
        while not self._stop.is_set():
            claimed = await asyncio.to_thread(
                deliveries.claim, self.engine, self.clock(), worker=self.name,
                limit=limit, lease=self.tuning.lease)
            if not claimed:
                if fanning.done():
                    return handled
                await asyncio.wait([fanning], timeout=0.005)
                continue
            limit = self.tuning.batch
            jobs, skipped = await asyncio.to_thread(self._jobs, claimed)
            for detail in sorted(set(skipped.values())):
                await asyncio.to_thread(deliveries.drop, self.engine,
                                        [i for i, why in skipped.items() if why == detail],
                                        detail=detail)
            results = await self._attempt_all(jobs)
            await self._record(results)
            handled += len(claimed)
        return handled

    async def _attempt_all(self, jobs: list[Job]) -> list[Result]:
        """Every job's attempt; once the worker is told to stop, those still in flight after
        STOP_GRACE are cancelled and come back as interrupted (to be sent again)."""
        tasks = [asyncio.ensure_future(self._attempt(job)) for job in jobs]
        if not tasks:
            return []
        everything = asyncio.gather(*tasks)
        halt = asyncio.ensure_future(self._halted())
        first: list[asyncio.Future[Any]] = [everything, halt]
        try:
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.cancel()
        if not everything.done():
            for task in tasks:
                task.cancel()
        return await everything

    async def _halted(self) -> None:
        await self._stop.wait()
        await asyncio.sleep(STOP_GRACE)

    async def _record(self, results: list[Result]) -> None:
        """Record the attempts; while the database is away, keep trying for as long as the
        leases hold (after that other workers send them again, which is allowed)."""
        deadline = time.monotonic() + self.tuning.lease.total_seconds()
        pause = 0.5
        while True:
            try:
                await asyncio.to_thread(deliveries.record, self.engine, results,
                                        worker=self.name, rng=self._rng)
                return
            except Exception:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("could not record %d attempts; retrying", len(results),
                            exc_info=True)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _attempt(self, job: Job) -> Result:
        sender = self.senders.get(job.channel)
        started = time.perf_counter()
        if sender is None:
            outcome = Outcome(False, f"the {job.channel.value} channel is not configured here")
        else:
            try:
                async with self._limit:
                    outcome = await sender.send(job)
            except asyncio.CancelledError:  # only _attempt_all cancels an attempt: stopping
                outcome = Outcome(False, INTERRUPTED)
            except Exception as error:  # a channel's bug must not stop the others
                log.exception("the %s channel failed on delivery %s", job.channel.value,
                              job.delivery_id)
                outcome = Outcome(False, f"internal error: {type(error).__name__}")
        took = int((time.perf_counter() - started) * 1000)
        return Result(job.delivery_id, outcome, self.clock(), took)

    # Building jobs (in a thread: it reads the database) ---------------------------------

    def _jobs(self, claimed: list[Claimed]) -> tuple[list[Job], dict[int, str]]:
        """The jobs to send, and the deliveries not to send with the reason why."""
        world = self._current_world()
        ids = sorted({c.subscription_id for c in claimed if c.subscription_id})
        secrets_of: dict[str, str] = {}
        with reading(self.engine) as conn:
            subs = subscriptions.load_many(conn, ids, secrets=secrets_of)
        jobs: list[Job] = []
        skipped: dict[int, str] = {}
        for c in claimed:
            if c.channel is Channel.WEBSUB:
                jobs.append(Job(
                    delivery_id=c.id, event_id=c.event_id, topic=c.topic, payload=c.payload,
                    channel=c.channel, target=c.target, subscription=None, attempt=c.attempt,
                    key=notify.idempotency_key(c.event_id, c.subscription_id or c.target),
                    changes=[], links=Links(self.config.public_url),
                    subscription_id=c.subscription_id))
                continue
            sub = subs.get(c.subscription_id) if c.subscription_id else None
            if c.subscription_id and sub is None:
                skipped[c.id] = "the subscription no longer exists"
                continue
            if sub is not None and sub.status is SubscriptionStatus.DISABLED:
                # e.g. a replayed delivery of a subscription removed since, or gone (410)
                skipped[c.id] = f"the subscription has ended ({sub.disabled_reason})"
                continue
            changes: list[dict[str, Any]] = []
            if c.topic == notify.LEVELS_CHANGED:
                assert sub is not None
                changes = self._heard(c, world, sub)
                if not changes:
                    skipped[c.id] = "no change in it for this subscriber"
                    continue
            payload = c.payload
            if c.topic == notify.CONFIRM and sub is not None:
                payload = {**payload, "area_names": [
                    pick(world.tree.areas[code].names, [sub.language, "en"]) or code
                    if code in world.tree.areas else code for code in sub.areas]}
            secret = secrets_of.get(c.subscription_id, "") if c.subscription_id else ""
            jobs.append(Job(
                delivery_id=c.id, event_id=c.event_id, topic=c.topic, payload=payload,
                channel=c.channel, target=c.target, subscription=sub, attempt=c.attempt,
                key=notify.idempotency_key(c.event_id, c.subscription_id or c.target),
                changes=changes, links=self._links(c, sub, secret),
                secret=secret if c.channel is Channel.WEBHOOK else "",
                subscription_id=c.subscription_id))
        return jobs, skipped

    def _links(self, c: Claimed, sub: Subscription | None, secret: str) -> Links:
        site = self.config.public_url
        if sub is None:
            declaration = c.payload.get("declaration")
            return Links(site, console=f"{site}/console/declarations/{declaration}"
                         if declaration else None)

        def signed(purpose: str) -> str:
            signature = subscriptions.link_signature(secret, sub.id, purpose)
            return f"{site}/subscriptions/{sub.id}/{purpose}?sig={signature}"

        if sub.channel in (Channel.EMAIL, Channel.PUSH):
            return Links(site, confirm=signed("confirm"), unsubscribe=signed("unsubscribe"))
        return Links(site)

    def _current_world(self) -> World:
        with reading(self.engine) as conn:
            version = int(conn.execute(select(t.state.c.version)
                                       .where(t.state.c.id == 1)).scalar_one())
            if self._world is None or self._world[0] != version:
                self._world = (version, world_of(conn, published_only=True))
                self._described.clear()
                self._heard_cache.clear()
        return self._world[1]

    def _heard(self, c: Claimed, world: World, sub: Subscription) -> list[dict[str, Any]]:
        """The changes of the event this subscriber hears (many subscribers share them)."""
        key = (c.event_id, sub.language, sub.areas, sub.schemes)
        if key not in self._heard_cache:
            described = self._describe(c, world, sub.language)
            self._heard_cache[key] = [dict(x) for x in notify.relevant(
                world.tree, described, sub.areas, sub.schemes)]
        return self._heard_cache[key]

    def _describe(self, c: Claimed, world: World, language: str) -> list[dict[str, Any]]:
        """The event's changes with names in `language`, once per event and language."""
        key = (c.event_id, language)
        if key not in self._described:
            at = datetime.fromisoformat(c.payload["at"]) if c.payload.get("at") else c.event_at
            self._described[key] = describe_all(world, c.payload.get("changes", []), language,
                                                at, self.config.public_url)
        return self._described[key]


def describe_all(world: World, changes: list[Mapping[str, Any]], language: str,
                 at: datetime, site: str) -> list[dict[str, Any]]:
    """An event's level changes for a subscriber reading `language`; the declarations
    behind them are worked out once per scheme."""
    causes: dict[str, dict[str, str | None]] = {}
    for key in {c["scheme"] for c in changes if c["scheme"] in world.schemes}:
        causes[key] = {code: (e.sources[0].declaration.id if e.sources else None)
                       for code, e in effective_levels(world.tree, world.history(key),
                                                       at).items()}
    return [describe(world, change, language, site,
                     causes.get(change["scheme"], {}).get(change["area"]))
            for change in changes]


def describe(world: World, change: Mapping[str, Any], language: str, site: str,
             declaration: str | None) -> dict[str, Any]:
    """One level change, for a subscriber reading `language`."""
    order = [language, "en"]
    scheme = world.schemes.get(change["scheme"])
    area = world.tree.areas.get(change["area"])

    def level(key: str | None) -> tuple[str | None, str | None, int]:
        if scheme is None or key is None or key not in {lv.key for lv in scheme.levels}:
            return None, None, -1
        found = scheme.level(key)
        return pick(found.name, order), found.colour, found.rank

    from_name, _, from_rank = level(change.get("from"))
    to_name, colour, to_rank = level(change.get("to"))
    return {
        "scheme": change["scheme"], "scheme_name": pick(scheme.name, order) if scheme else None,
        "area": change["area"], "area_name": pick(area.names, order) if area else None,
        "from": change.get("from"), "from_name": from_name,
        "to": change.get("to"), "to_name": to_name, "colour": colour,
        "raised": to_rank > from_rank, "declaration": declaration,
        "url": site + urls.area(language if language in ("kk", "ru", "en") else None,
                                change["area"]),
    }


def run_forever(engine: Engine, config: settings.Settings, tuning: Tuning | None = None, *,
                feeds: FeedSource | None = None, parent: int | None = None) -> None:
    """Run a worker until SIGINT or SIGTERM (`tocsin worker`, and the worker of `tocsin
    serve`); with `parent`, also until that process is gone (this process's parent changes),
    for systems where the kernel cannot signal it (Linux can: PR_SET_PDEATHSIG)."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        watching = asyncio.ensure_future(_until_orphaned(parent, stop)) if parent else None
        try:
            await Worker(engine, config, tuning=tuning, feeds=feeds).run(stop)
        finally:
            if watching is not None:
                watching.cancel()

    asyncio.run(main())


async def _until_orphaned(parent: int, stop: asyncio.Event) -> None:
    """Set `stop` once `parent` is no longer this process's parent."""
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_LOOK)
    log.warning("the process that started this worker (%d) is gone; stopping", parent)
    stop.set()
