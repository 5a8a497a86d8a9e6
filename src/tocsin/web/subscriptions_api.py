"""The JSON API of notifications: subscribers register their webhooks and read what was
delivered to them (/api/v1/authority/subscriptions…, bearer token with the 'subscribe'
right), and browsers register for push (/api/v1/push/…, no token, rate-limited).

A webhook's signing secret is in the answer that creates it and never again. Another
owner's subscription, or a delivery to it, answers 404 as if it did not exist.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tocsin import settings
from tocsin.domain.access import Principal, Scope, may_manage_subscription, may_subscribe
from tocsin.domain.errors import InvalidInput, NotFound
from tocsin.domain.notify import Channel, DeliveryStatus, Subscription
from tocsin.ingest.document import Document
from tocsin.render.errors import Refusal
from tocsin.render.query import ParamKind, parse_query
from tocsin.service import deliveries, keys, subscriptions
from tocsin.store.database import reading
from tocsin.web.authority import (
    PREFIX,
    AuthorityApi,
    Endpoint,
    answer,
    client_key,
    grouped,
    guarded,
    json_body,
    now,
)
from tocsin.web.guard import Limiter

SUBSCRIPTIONS = f"{PREFIX}/subscriptions"
DELIVERIES = f"{PREFIX}/deliveries"
PUSH = "/api/v1/push"
SUBSCRIPTION_ID = re.compile(r"^sub_[0-9a-f]{16}$")
DELIVERY_ID = re.compile(r"^[1-9][0-9]{0,17}$")
"""Positive, and small enough for a 64-bit column."""
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
WEBHOOK_FIELDS = {"webhook", "areas", "schemes", "language"}
PUSH_FIELDS = {"endpoint", "expirationTime", "keys", "areas", "schemes", "language"}
log = logging.getLogger("tocsin.web")
T = TypeVar("T")


def is_push_path(path: str) -> bool:
    """The browser push paths: answered by the private app, though anyone may call them."""
    return path == PUSH or path.startswith(PUSH + "/")


@dataclass(frozen=True)
class Wanted:
    """What a subscriber asked to hear, as parsed from a request body."""

    target: str
    areas: list[str]
    schemes: list[str]
    language: str
    details: dict[str, Any]


def parse_webhook(body: Document) -> Wanted:
    """The body of POST …/subscriptions; InvalidInput naming the field. Whether the URL may
    be reached and the areas and schemes exist is `subscriptions.add`'s question."""
    body.reject_unknown(WEBHOOK_FIELDS)
    return Wanted(_url(body, "webhook"), body.strings("areas"), body.strings("schemes", []),
                  body.text("language", "en"), {})


def parse_push(body: Document) -> Wanted:
    """The body of POST /api/v1/push/subscriptions: the browser's PushSubscription.toJSON()
    with the areas, schemes and language chosen on the page."""
    body.reject_unknown(PUSH_FIELDS)
    expires = body.raw("expirationTime", None)
    if expires is not None and (isinstance(expires, bool)
                                or not isinstance(expires, int | float)):
        body.fail("expirationTime", "must be a number or null",
                  "send the browser's PushSubscription.toJSON() as it is")
    found = body.table("keys")
    found.reject_unknown({"p256dh", "auth"})
    details = {name: found.text(name) for name in ("p256dh", "auth")}
    return Wanted(_url(body, "endpoint"), body.strings("areas"), body.strings("schemes", []),
                  body.text("language", "en"), details)


def _url(body: Document, key: str) -> str:
    """A URL field, refused early when no request could ever be sent to it (control
    characters, a host name that cannot be encoded)."""
    value = body.text(key).strip()
    try:
        value.encode("utf-8")
        (urlsplit(value).hostname or "").encode("idna")
    except (UnicodeError, ValueError):
        body.fail(key, f"{value[:80]!r} is not a usable URL",
                  "give an absolute https URL, e.g. https://example.org/hook")
    if CONTROL.search(value):
        body.fail(key, "has control characters", "give the URL alone, on one line")
    return value


class SubscriptionsApi:
    def __init__(self, engine: Engine, limiter: Limiter) -> None:
        self.engine = engine
        self.limiter = limiter
        self.door = AuthorityApi(engine, limiter)
        config = settings.read()
        self.allow_private = config.allow_private_targets
        self.keys_dir = Path(config.keys_dir)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(partial(fn, *args, **kwargs))

    async def principal(self, request: Request) -> Principal:
        """The bearer token's principal, holding the subscribe or the admin right."""
        p = await self.door.principal(request)
        if not p.has(Scope.ADMIN):
            may_subscribe(p)
        return p

    async def _visible(self, p: Principal, sub_id: str) -> Subscription:
        """The subscription, if the principal may see it; else 404 as if there were none."""
        if SUBSCRIPTION_ID.match(sub_id):
            try:
                sub = await self.run(subscriptions.get, self.engine, sub_id)
            except NotFound:
                pass
            else:
                if may_manage_subscription(p, sub.owner):
                    return sub
        raise NotFound(f"no subscription {sub_id!r}",
                       f"list yours with GET {SUBSCRIPTIONS}")

    async def _add(self, wanted: Wanted, *, channel: Channel, owner: str,
                   actor: str) -> tuple[Subscription, str]:
        """As the rest of the API: an unknown area or scheme is a 404 naming it, any other
        refusal a 400."""
        return await self.run(
            subscriptions.add, self.engine, channel=channel, target=wanted.target,
            areas=wanted.areas, schemes=wanted.schemes, owner=owner, language=wanted.language,
            now=now(), details=wanted.details, allow_private=self.allow_private, actor=actor)

    # -- webhooks, with a token ---------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        p = await self.door.principal(request)
        may_subscribe(p)
        wanted = parse_webhook(await json_body(request))
        sub, secret = await self._add(wanted, channel=Channel.WEBHOOK, owner=p.actor,
                                      actor=p.actor)
        return answer({**sub.as_json(), "secret": secret}, 201)

    async def listing(self, request: Request) -> Response:
        p = await self.principal(request)
        q = parse_query(list(request.query_params.multi_items()), {"owner": ParamKind.TEXT})
        owner = q.get("owner")
        if owner is not None and CONTROL.search(owner):
            raise InvalidInput("query parameter owner has control characters",
                               "give an owner as the subscriptions show it, e.g. user:NAME")
        if not p.has(Scope.ADMIN):
            if owner not in (None, p.actor):  # others' are not seen, not even as a count
                return answer({"subscriptions": []})
            owner = p.actor
        found = await self.run(subscriptions.list_subscriptions, self.engine, owner=owner)
        return answer({"subscriptions": [s.as_json() for s in found]})

    async def show(self, request: Request) -> Response:
        p = await self.principal(request)
        parse_query(list(request.query_params.multi_items()), {})
        sub = await self._visible(p, request.path_params["id"])
        return answer(sub.as_json())

    async def remove(self, request: Request) -> Response:
        p = await self.principal(request)
        parse_query(list(request.query_params.multi_items()), {})
        sub = await self._visible(p, request.path_params["id"])
        removed = await self.run(subscriptions.remove, self.engine, sub.id, now=now(),
                                 actor=p.actor, owner=None if p.has(Scope.ADMIN) else p.actor)
        return answer(removed.as_json())

    async def sent(self, request: Request) -> Response:
        p = await self.principal(request)
        q = parse_query(list(request.query_params.multi_items()),
                        {"status": ParamKind.TEXT, "limit": ParamKind.LIMIT})
        status = _delivery_status(q.get("status"))
        sub = await self._visible(p, request.path_params["id"])
        found = await self.run(deliveries.listing, self.engine, status=status,
                               subscription=sub.id, limit=q.get("limit", 50))
        return answer({"deliveries": found})

    async def delivery(self, request: Request) -> Response:
        p = await self.principal(request)
        parse_query(list(request.query_params.multi_items()), {})
        ident = request.path_params["id"]
        unseen = NotFound(f"no delivery {ident!r}",
                          f"list a subscription's deliveries with GET {SUBSCRIPTIONS}/ID/"
                          "deliveries")
        if not DELIVERY_ID.match(ident):
            raise unseen
        try:
            found = await self.run(deliveries.show, self.engine, int(ident))
        except NotFound:
            raise unseen from None
        if not p.has(Scope.ADMIN):
            if found["subscription"] is None:  # a reminder to an issuer: no subscriber's
                raise unseen
            try:
                await self._visible(p, found["subscription"])
            except NotFound:
                raise unseen from None
        return answer(found)

    # -- browser push, without a token --------------------------------------------------------

    async def push_subscribe(self, request: Request) -> Response:
        self.limiter.take(client_key(request), now())
        wanted = parse_push(await json_body(request))
        sub, _ = await self._add(wanted, channel=Channel.PUSH, owner="public", actor="public")
        path = await self.run(_unsubscribe_path, self.engine, sub.id)
        return answer({"id": sub.id, "status": sub.status.value, "unsubscribe": path}, 201)

    async def push_key(self, request: Request) -> Response:
        parse_query(list(request.query_params.multi_items()), {})
        try:
            key = await self.run(keys.vapid_key, self.keys_dir, create=True)
        except keys.KeyUnusable as error:  # the operator's problem: name it in the log only
            log.error("browser push is off: %s", error.message)
            raise Refusal(503, "browser push is not available on this server just now",
                          "try again later") from None
        assert key is not None  # made when missing
        return answer({"public_key": key.public_key_b64url})


def _delivery_status(value: str | None) -> DeliveryStatus | None:
    if value is None:
        return None
    try:
        return DeliveryStatus(value)
    except ValueError:
        raise InvalidInput(f"query parameter status={value[:40]!r} is not a delivery status",
                           f"use one of {', '.join(s.value for s in DeliveryStatus)}") from None


def _unsubscribe_path(engine: Engine, sub_id: str) -> str:
    with reading(engine) as conn:
        return subscriptions.signed_path(conn, sub_id, "unsubscribe")


def routes(engine: Engine, limiter: Limiter) -> list[Route]:
    api = SubscriptionsApi(engine, limiter)
    table: list[tuple[str, Endpoint, list[str]]] = [
        (SUBSCRIPTIONS, api.listing, ["GET"]),
        (SUBSCRIPTIONS, api.create, ["POST"]),
        (f"{SUBSCRIPTIONS}/{{id}}", api.show, ["GET"]),
        (f"{SUBSCRIPTIONS}/{{id}}", api.remove, ["DELETE"]),
        (f"{SUBSCRIPTIONS}/{{id}}/deliveries", api.sent, ["GET"]),
        (f"{DELIVERIES}/{{id}}", api.delivery, ["GET"]),
        (f"{PUSH}/subscriptions", api.push_subscribe, ["POST"]),
        (f"{PUSH}/key", api.push_key, ["GET"]),
    ]
    return grouped([(path, guarded(fn), methods) for path, fn, methods in table])
