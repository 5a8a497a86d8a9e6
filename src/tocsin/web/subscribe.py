"""The public side of subscribing (/subscriptions/…): the e-mail form of every area page,
the double opt-in link, and the unsubscribe link of every e-mail and push message.

Pages work without JavaScript and are private (no-store). Mail scanners fetch links before
people do, so a GET only shows a button; only the POST confirms or unsubscribes. The form
answers the same whether or not the address was already subscribed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial, wraps
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tocsin import settings
from tocsin.domain.errors import Forbidden, InvalidInput, NotFound, RateLimited, TocsinError
from tocsin.domain.notify import Channel, Subscription, SubscriptionStatus, check_email
from tocsin.domain.text import pick
from tocsin.render import i18n, pages, urls
from tocsin.render.errors import status_of
from tocsin.render.pages import Link, Notice, PageContext
from tocsin.service import subscriptions
from tocsin.store import records
from tocsin.store.database import reading
from tocsin.web.authority import client_key, grouped, read_body
from tocsin.web.guard import PRIVATE_HEADERS, Limiter
from tocsin.web.site import negotiate

PREFIX = "/subscriptions"
EMAIL_FORM = pages.EMAIL_SUBSCRIPTIONS
SENT = f"{EMAIL_FORM}/sent"
FORM = "application/x-www-form-urlencoded"
OWNER = "public"
SHOWN = 80
"""Characters of a refused value repeated on the error page."""
EXTRA_HEADERS = [(b"x-robots-tag", b"noindex")]
"""Signed links are in these pages' addresses: keep them out of search engines."""
T = TypeVar("T")


def now() -> datetime:
    return datetime.now(UTC)


class Refused(Exception):
    """A refusal already worded for the reader, in `lang`."""

    def __init__(self, status: int, lang: str, message: str) -> None:
        self.status = status
        self.lang = lang
        self.message = message
        super().__init__(message)


def language(request: Request, preferred: str | None = None) -> str:
    """?lang=, else `preferred` (a subscription's language), else Accept-Language."""
    asked = request.query_params.get("lang")
    if asked in urls.PAGE_LANGUAGES:
        return asked
    if preferred in urls.PAGE_LANGUAGES:
        return str(preferred)
    return negotiate(request.headers.get("accept-language"))


def words(lang: str) -> Mapping[str, str]:
    return i18n.ui(lang)


class Subscribing:
    def __init__(self, engine: Engine, limiter: Limiter) -> None:
        self.engine = engine
        self.limiter = limiter
        self.public_origin = _origin_of(settings.read().public_url)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(partial(fn, *args, **kwargs))

    # -- answers ------------------------------------------------------------------------------

    def page(self, request: Request, lang: str, notice: Notice, status: int = 200) -> Response:
        ctx = PageContext(lang=lang, at=now(), now=now(), time_travel=False)
        html = pages.notice_page(ctx, notice, lambda other: _same_page(request, other))
        return _private(HTMLResponse(html, status_code=status))

    def error(self, request: Request, status: int, lang: str, message: str) -> Response:
        at = now()
        html = pages.error_page(PageContext(lang=lang, at=at, now=at, time_travel=False),
                                status, message)
        return _private(HTMLResponse(html, status_code=status))

    def _same_origin(self, request: Request, lang: str) -> None:
        """Refuse a form another site sent (browsers name the sending origin)."""
        origin = request.headers.get("origin")
        if origin is not None and origin not in (_own_origin(request), self.public_origin):
            raise Refused(403, lang, words(lang)["sub_cross_site"])

    async def _checked(self, request: Request, purpose: str) -> tuple[Subscription, str]:
        """The subscription the signed link names, with its secret; 404 or 403 otherwise."""
        lang = language(request)
        try:
            return await self.run(_verify, self.engine, request.path_params["id"], purpose,
                                  request.query_params.get("sig", ""))
        except NotFound:
            raise Refused(404, lang, words(lang)["sub_unknown"]) from None
        except Forbidden:
            raise Refused(403, lang, words(lang)["sub_bad_link"]) from None

    async def _areas(self, codes: Sequence[str], lang: str) -> dict[str, str]:
        return await self.run(_area_names, self.engine, codes, lang)

    # -- the e-mail form ----------------------------------------------------------------------

    async def email(self, request: Request) -> Response:
        """POST /subscriptions/email: a pending subscription and its confirmation message,
        then 303 to the page that says so."""
        lang = language(request)
        self.limiter.take(client_key(request), now())
        self._same_origin(request, lang)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != FORM:
            raise Refused(415, lang, words(lang)["sub_form_only"])
        fields = _fields(await read_body(request))
        asked = fields.get("language", "")
        if asked not in urls.PAGE_LANGUAGES:
            raise Refused(400, lang, words(lang)["sub_bad_language"].format(
                value=_shown(asked)))
        lang = asked
        t = words(lang)
        address, area = fields.get("email", "").strip(), fields.get("area", "").strip()
        if not address:
            raise Refused(400, lang, t["sub_no_email"])
        try:  # the one check every door shares; only its words are the page's own
            check_email(address)
        except InvalidInput:
            raise Refused(400, lang, t["sub_bad_email"].format(value=_shown(address))) from None
        if not area:
            raise Refused(400, lang, t["sub_bad_area"].format(value="—"))
        try:  # an address already subscribed is answered the same: nothing is revealed
            await self.run(subscriptions.add, self.engine, channel=Channel.EMAIL,
                           target=address, areas=[area], owner=OWNER, language=lang,
                           now=now())
        except NotFound:
            raise Refused(400, lang, t["sub_bad_area"].format(value=_shown(area))) from None
        except InvalidInput as error:
            raise Refused(400, lang, error.message) from None
        target = f"{SENT}?{urlencode({'lang': lang, 'area': area})}"
        return _private(RedirectResponse(target, status_code=303))

    async def sent(self, request: Request) -> Response:
        """GET /subscriptions/email/sent: check your inbox."""
        self.limiter.take(client_key(request), now())
        lang = language(request)
        t = words(lang)
        area = request.query_params.get("area", "")
        names = await self._areas([area], lang) if area else {}
        links = [Link(urls.area(lang, code), t["sent_back"].format(area=name))
                 for code, name in names.items()]
        return self.page(request, lang, Notice(t["sent_title"], [t["sent_text"]],
                                               links=links))

    # -- confirming ---------------------------------------------------------------------------

    async def confirm_form(self, request: Request) -> Response:
        """GET …/confirm?sig=: a button, so that a mail scanner's fetch confirms nothing."""
        self.limiter.take(client_key(request), now())
        sub, secret = await self._checked(request, "confirm")
        lang = language(request, sub.language)
        t = words(lang)
        if sub.status is SubscriptionStatus.DISABLED:
            raise Refused(403, lang, t["sub_ended"])
        names = await self._areas(sub.areas, lang)
        if sub.status is SubscriptionStatus.ACTIVE:
            return self._confirmed(request, sub, secret, lang, names)
        return self.page(request, lang, Notice(
            t["confirm_title"], [t["confirm_text"].format(areas=_listed(sub, names))],
            action=_here(request), button=t["confirm_button"]))

    async def confirm(self, request: Request) -> Response:
        """POST …/confirm?sig=: the subscription is active."""
        lang = language(request)
        self.limiter.take(client_key(request), now())
        self._same_origin(request, lang)
        await read_body(request)  # nothing in it is needed; only its size is limited
        sub, secret = await self._checked(request, "confirm")
        lang = language(request, sub.language)
        if sub.status is SubscriptionStatus.DISABLED:
            raise Refused(403, lang, words(lang)["sub_ended"])
        sub = await self.run(subscriptions.confirm, self.engine, sub.id,
                             request.query_params.get("sig", ""), now=now())
        return self._confirmed(request, sub, secret, lang, await self._areas(sub.areas, lang))

    def _confirmed(self, request: Request, sub: Subscription, secret: str, lang: str,
                   names: Mapping[str, str]) -> Response:
        t = words(lang)
        signature = subscriptions.link_signature(secret, sub.id, "unsubscribe")
        links = [Link(urls.area(lang, code), name) for code, name in names.items()]
        links.append(Link(f"{PREFIX}/{sub.id}/unsubscribe?sig={signature}",
                          t["unsubscribe_link"]))
        return self.page(request, lang, Notice(
            t["confirmed_title"], [t["confirmed_text"].format(areas=_listed(sub, names))],
            links=links))

    # -- unsubscribing ------------------------------------------------------------------------

    async def unsubscribe_form(self, request: Request) -> Response:
        """GET …/unsubscribe?sig=: a button (a mail scanner's fetch ends nothing)."""
        self.limiter.take(client_key(request), now())
        sub, _ = await self._checked(request, "unsubscribe")
        lang = language(request, sub.language)
        if sub.status is SubscriptionStatus.DISABLED:
            return self._unsubscribed(request, lang)
        t = words(lang)
        names = await self._areas(sub.areas, lang)
        return self.page(request, lang, Notice(
            t["unsubscribe_title"], [t["unsubscribe_text"].format(areas=_listed(sub, names))],
            action=_here(request), button=t["unsubscribe_button"]))

    async def unsubscribe(self, request: Request) -> Response:
        """POST …/unsubscribe?sig=: the page's button, or RFC 8058 one-click from a mail
        provider (body List-Unsubscribe=One-Click, no Origin, any form encoding). The signed
        address is the whole authority, so neither the origin nor the body is checked, and
        no rate limit applies: providers send many people's clicks from few addresses."""
        await read_body(request)
        sub, _ = await self._checked(request, "unsubscribe")
        await self.run(subscriptions.unsubscribe, self.engine, sub.id,
                       request.query_params.get("sig", ""), now=now())
        return self._unsubscribed(request, language(request, sub.language))

    def _unsubscribed(self, request: Request, lang: str) -> Response:
        t = words(lang)
        return self.page(request, lang, Notice(t["unsubscribed_title"],
                                               [t["unsubscribed_text"]]))


# -- reading the store (in a thread) --------------------------------------------------------

def _verify(engine: Engine, sub_id: str, purpose: str,
            signature: str) -> tuple[Subscription, str]:
    """The subscription and its secret when `signature` signs (purpose, id); NotFound for an
    unknown id, Forbidden for a wrong signature. Writes nothing."""
    sub = subscriptions.get(engine, sub_id)
    with reading(engine) as conn:
        secret = subscriptions.secret_of(conn, sub_id)
    expected = subscriptions.link_signature(secret, sub_id, purpose)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Forbidden(f"this {purpose} link is not valid",
                        "use the link exactly as the message gave it")
    return sub, secret


def _area_names(engine: Engine, codes: Sequence[str], lang: str) -> dict[str, str]:
    """The known areas among `codes`, named in `lang`."""
    with reading(engine) as conn:
        tree = records.load_tree(conn)
    return {code: pick(tree.areas[code].names, [lang, "en"]) or code
            for code in codes if code in tree.areas}


# -- small pieces ---------------------------------------------------------------------------

def _fields(body: bytes) -> dict[str, str]:
    """The first value of each field of a form-encoded body."""
    fields: dict[str, str] = {}
    for key, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
        fields.setdefault(key, value)
    return fields


def _shown(value: str) -> str:
    return value if len(value) <= SHOWN else value[:SHOWN] + "…"


def _listed(sub: Subscription, names: Mapping[str, str]) -> str:
    return ", ".join(names.get(code, code) for code in sub.areas)


def _here(request: Request) -> str:
    """This page's own address, signature included: where its button posts."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _same_page(request: Request, lang: str) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return f"{request.url.path}?{urlencode([*params, ('lang', lang)])}"


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _private(response: Response) -> Response:
    for key, value in [*PRIVATE_HEADERS, *EXTRA_HEADERS]:
        response.headers[key.decode()] = value.decode()
    return response


def _guarded(s: Subscribing, endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """Every refusal as a page in the reader's language."""
    @wraps(endpoint)
    async def run(request: Request) -> Response:
        try:
            response: Response = await endpoint(request)
            return response
        except Refused as refusal:
            return s.error(request, refusal.status, refusal.lang, refusal.message)
        except TocsinError as error:
            lang = language(request)
            status = status_of(error)
            message = error.message
            if isinstance(error, RateLimited):
                message = words(lang)["sub_slow_down"].format(seconds=error.retry_after)
            elif status == 413:
                message = words(lang)["sub_too_large"]
            response = s.error(request, status, lang, message)
            if isinstance(error, RateLimited):
                response.headers["retry-after"] = str(error.retry_after)
            return response
    return run


def is_subscribing(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def routes(engine: Engine, limiter: Limiter) -> list[Route]:
    s = Subscribing(engine, limiter)
    table: list[tuple[str, Callable[[Request], Any], list[str]]] = [
        (EMAIL_FORM, s.email, ["POST"]),
        (SENT, s.sent, ["GET"]),
        (f"{PREFIX}/{{id}}/confirm", s.confirm_form, ["GET"]),
        (f"{PREFIX}/{{id}}/confirm", s.confirm, ["POST"]),
        (f"{PREFIX}/{{id}}/unsubscribe", s.unsubscribe_form, ["GET"]),
        (f"{PREFIX}/{{id}}/unsubscribe", s.unsubscribe, ["POST"]),
    ]
    return grouped([(path, _guarded(s, fn), methods) for path, fn, methods in table])
