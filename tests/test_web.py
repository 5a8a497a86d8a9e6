"""The public face over HTTP: in process and over a real socket."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from tests.helpers import request
from tests.web_server import running

from tocsin.service import commands
from tocsin.web.app import TocsinApp, create_app
from tocsin.web.publish import publish
from tocsin.web.snapshot import build

ACTOR = "tester"


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def app(engine: Engine) -> TocsinApp:
    return create_app(engine)


def get(app: TocsinApp, path: str, **headers: str) -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                     base_url="http://tocsin.test") as client:
            return await client.get(path, headers=headers)
    return asyncio.run(call())


ERROR_PATHS = [
    ("/api/v1/areas/KZ-99", 404, "area 'KZ-99' is not known"),
    ("/api/v1/declarations/nope", 404, "declaration 'nope'"),
    ("/api/v1/levels?at=yesterday", 400, "is not an ISO 8601 time"),
    ("/api/v1/levels?colour=red", 400, "colour"),
    ("/api/v1/declarations?limit=0", 400, "limit"),
    ("/api/v1/nothing", 404, "there is no API document"),
    ("/map/nope.svg", 404, "scheme 'nope' is not known"),
    ("/badge/kz-terror/KZ-99.svg", 404, "area 'KZ-99' is not known"),
]


@pytest.mark.parametrize(("path", "status", "message"), ERROR_PATHS)
def test_every_error_has_the_one_json_shape(app: TocsinApp, path: str, status: int,
                                            message: str) -> None:
    response = get(app, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "code", "message", "fix"}
    assert body["error"]["status"] == status
    assert body["error"]["code"] == {400: "bad_request", 404: "not_found"}[status]
    assert message in body["error"]["message"]


def test_bad_at_on_a_page_names_the_format_and_unknown_pages_404(app: TocsinApp) -> None:
    bad = get(app, "/en/?at=2022-01-08")
    assert bad.status_code == 400 and "text/html" in bad.headers["content-type"]
    assert "UTC offset" in bad.text
    assert get(app, "/en/areas/KZ-99").status_code == 404
    assert get(app, "/en/nowhere").status_code == 404


def test_methods_other_than_get_are_refused(app: TocsinApp) -> None:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                     base_url="http://tocsin.test") as client:
            return await client.post("/api/v1/levels", content=b"{}")
    response = asyncio.run(call())
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_etags_answer_304_and_cors_is_open(app: TocsinApp) -> None:
    first = get(app, "/api/v1/levels")
    assert first.status_code == 200 and first.headers["access-control-allow-origin"] == "*"
    etag = first.headers["etag"]
    assert etag.startswith('"') and "last-modified" in first.headers
    assert "max-age" in first.headers["cache-control"]
    again = get(app, "/api/v1/levels", **{"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    other = get(app, "/api/v1/levels", **{"if-none-match": '"nope"'})
    assert other.status_code == 200


def test_language_negotiation(app: TocsinApp) -> None:
    ru = get(app, "/", **{"accept-language": "de;q=1, ru;q=0.9, en;q=0.1"})
    assert '<html lang="ru"' in ru.text and ru.headers["vary"] == "Accept-Language"
    assert ru.content == get(app, "/ru/").content
    assert '<html lang="kk"' in get(app, "/?lang=kk").text
    assert '<html lang="en"' in get(app, "/?lang=xx").text  # unknown → default
    assert get(app, "/").content == get(app, "/en/").content


def test_past_instants_are_cacheable_for_long(app: TocsinApp) -> None:
    past = get(app, "/api/v1/levels?at=2022-01-08T00:00Z")
    assert past.status_code == 200 and "max-age=86400" in past.headers["cache-control"]


def wait_for(predicate: object, seconds: float = 10.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def level(client: httpx.Client, code: str) -> str | None:
    data = client.get(f"/api/v1/areas/{code}").json()
    levels = [x for x in data["levels"] if x["scheme"] == "kz-terror"]
    return levels[0]["level"] if levels else None


def test_a_declaration_shows_over_http_without_readers_waiting(engine: Engine) -> None:
    app = create_app(engine)
    with running(app) as base, httpx.Client(base_url=base) as client:
        assert level(client, "KZ-75") is None
        commands.declare(engine, [request("critical", ("KZ",))], now=now(), actor=ACTOR)
        wait_for(lambda: level(client, "KZ-75") == "critical")
        page = client.get("/en/areas/KZ-75")
        assert page.status_code == 200 and "Critical" in page.text


def test_a_level_starting_later_shows_with_no_write(engine: Engine) -> None:
    app = create_app(engine)
    with running(app) as base, httpx.Client(base_url=base) as client:
        start = now() + timedelta(seconds=2)
        commands.declare(engine, [request("high", ("KZ-71",), effective=start,
                                          expires=start + timedelta(seconds=2))],
                         now=now(), actor=ACTOR)
        # The declaration is seen at once, but its level only holds from `start`: the
        # snapshot rebuilds itself then, and again at the expiry, with no write.
        wait_for(lambda: app.holder.current.next_change == start, 1.5)
        assert level(client, "KZ-71") is None
        wait_for(lambda: level(client, "KZ-71") == "high", 5)
        assert now() >= start
        wait_for(lambda: level(client, "KZ-71") is None, 5)


def read_events(base: str, last_id: str | None, count: int,
                found: list[tuple[str, str, str]], ready: threading.Event) -> None:
    headers = {"last-event-id": last_id} if last_id else {}
    with httpx.stream("GET", f"{base}/events", headers=headers, timeout=15) as response:
        ready.set()
        event: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(":")
                event[key] = value.strip()
            elif line == "" and "event" in event:
                found.append((event.get("id", ""), event["event"], event.get("data", "")))
                event = {}
                if len(found) >= count:
                    return


def test_server_sent_events_and_reconnecting_misses_nothing(engine: Engine) -> None:
    app = create_app(engine)
    with running(app) as base:
        first: list[tuple[str, str, str]] = []
        ready = threading.Event()
        reader = threading.Thread(target=read_events, args=(base, None, 2, first, ready))
        reader.start()
        ready.wait(5)
        commands.declare(engine, [request("moderate", ("KZ-79",))], now=now(), actor=ACTOR)
        time.sleep(0.5)
        commands.declare(engine, [request("high", ("KZ-79",))], now=now(), actor=ACTOR)
        reader.join(10)
        assert [e[1] for e in first] == ["levels", "levels"]
        changes = json.loads(first[0][2])["changes"]
        assert {"scheme": "kz-terror", "area": "KZ-79", "from": None, "to": "moderate"} in changes
        # Reconnect from the first event: the second is sent again, nothing is lost.
        again: list[tuple[str, str, str]] = []
        ready = threading.Event()
        reader = threading.Thread(target=read_events, args=(base, first[0][0], 1, again, ready))
        reader.start()
        reader.join(10)
        assert again == [first[1]]
        # Ids are the outbox's: another server process (here a second app) resumes the same.
        with running(create_app(engine)) as other:
            elsewhere: list[tuple[str, str, str]] = []
            reader = threading.Thread(target=read_events, args=(
                other, first[0][0], 1, elsewhere, threading.Event()))
            reader.start()
            reader.join(10)
        assert [(e[0], e[1]) for e in elsewhere] == [(first[1][0], "levels")]
        assert json.loads(elsewhere[0][2])["changes"] == json.loads(first[1][2])["changes"]
        # An id this process never issued gets a reset, so the page reloads everything.
        reset: list[tuple[str, str, str]] = []
        reader = threading.Thread(target=read_events, args=(base, "0-99", 1, reset,
                                                            threading.Event()))
        reader.start()
        reader.join(10)
        assert reset[0][1] == "reset"


class MirrorHandler(SimpleHTTPRequestHandler):
    """Serves the mirror the way the README's nginx configuration does (try_files)."""

    def translate_path(self, path: str) -> str:
        base = super().translate_path(path)
        for candidate in (base, base + ".json", base + ".html", base + "/index.html"):
            if Path(candidate).is_file():
                return candidate
        return base

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    folder = tmp_path / "mirror"
    folder.mkdir()

    def handler(*args: object, **kwargs: object) -> MirrorHandler:
        return MirrorHandler(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_static_mirror_serves_the_same_bytes_as_the_live_server(
    engine: Engine, mirror_server: tuple[Path, str]
) -> None:
    folder, mirror = mirror_server
    commands.declare(engine, [request("critical", ("KZ",))], now=now(), actor=ACTOR)
    commands.declare(engine, [request("high", ("KZ-75",))], now=now(), actor=ACTOR)
    app = create_app(engine)
    snapshot = app.holder.current
    result = publish(snapshot, folder)
    paths = list(snapshot.site.paths())
    assert result.files == len(paths) > 100
    with running(app) as base, httpx.Client() as client:
        for path in paths:
            live = client.get(base + path)
            static = client.get(mirror + path)
            assert live.status_code == static.status_code == 200, path
            assert live.content == static.content, path


def test_publish_refuses_a_folder_it_did_not_write(engine: Engine, tmp_path: Path) -> None:
    from tocsin.domain.errors import InvalidInput

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InvalidInput, match="is not a tocsin mirror"):
        publish(build(engine), tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    a_file = tmp_path / "precious.txt"
    with pytest.raises(InvalidInput, match="is a file, not a folder"):
        publish(build(engine), a_file)
    target = tmp_path / "site"
    publish(build(engine), target)
    publish(build(engine), target)  # replacing an earlier mirror is fine
    assert (target / "index.html").is_file() and (target / "api/v1/levels.json").is_file()


def test_cors_preflight_and_allow_header(app: TocsinApp) -> None:
    async def call(method: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                     base_url="http://tocsin.test") as client:
            return await client.request(method, "/api/v1/levels")
    preflight = asyncio.run(call("OPTIONS"))
    assert preflight.status_code == 204 and "GET" in preflight.headers["allow"]
    assert "If-None-Match" in preflight.headers["access-control-allow-headers"]
    refused = asyncio.run(call("DELETE"))
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD, OPTIONS"
