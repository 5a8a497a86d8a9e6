"""The fuzz targets: every parser of outside input, driven through its real door in process.

`make fuzz` (fuzz/run.py) feeds each target hundreds of thousands of generated inputs, and
tests/test_fuzz_cases.py feeds it the kept cases in tests/fuzz_cases/TARGET/; both go through
`feed`, so a case means the same in both. A target takes bytes, as they would arrive: a file,
a query string, a request body. It may refuse them only with the error its door documents
(`TocsinError`: InvalidInput, NotFound, a Refusal carrying a 4xx status); any other
exception is a crash, and an input that takes more than `HANG_SECONDS` is a hang.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.datastructures import QueryParams
from starlette.requests import Request

from tocsin import demo, settings
from tocsin.domain.access import Principal, Role, parse_roles, parse_scopes
from tocsin.domain.errors import InvalidInput, TocsinError
from tocsin.domain.times import parse_duration
from tocsin.ingest.areas import GeoJSONMapping, read_areas_csv, read_areas_geojson
from tocsin.ingest.declarations import parse_declaration, read_change_file
from tocsin.ingest.document import Document
from tocsin.ingest.schemes import load_scheme_file
from tocsin.ingest.sources import read_sources
from tocsin.render import api
from tocsin.render.errors import Refusal
from tocsin.render.query import ParamKind, parse_query
from tocsin.service import importing, queries
from tocsin.service.queries import World
from tocsin.store.database import connect
from tocsin.web import console_forms as forms
from tocsin.web import site
from tocsin.web.authority import json_body
from tocsin.web.snapshot import build
from tocsin.web.subscriptions_api import parse_push, parse_webhook

HANG_SECONDS = 1.0
"""An input that takes longer than this is a hang: seconds of the processor's time, which a
machine busy with other work does not lengthen (the wall clock's seconds it does)."""
ABORT_SECONDS = 10.0
"""A watchdog interrupts an input after this long, so that one hang cannot stop a run."""
CASES = Path(__file__).resolve().parent / "fuzz_cases"


class Hang(Exception):
    """Raised by the watchdog inside an input that ran past ABORT_SECONDS."""


@dataclass(frozen=True)
class Target:
    name: str
    what: str
    run: Callable[[bytes], object]


@dataclass(frozen=True)
class Outcome:
    """What one input did: refused or accepted (`crash` None), or crashed, and how long."""

    seconds: float
    """processor time (see HANG_SECONDS)"""
    crash: str | None = None
    """The exception's type and where it was raised, e.g. 'KeyError at areas.py:212'."""
    trace: str = ""

    @property
    def hang(self) -> bool:
        return self.seconds > HANG_SECONDS


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang(f"the input ran for more than {ABORT_SECONDS:.0f} s")


def feed(target: Target, data: bytes) -> Outcome:
    """Run `target` on `data` under the watchdog; a TocsinError that is not a 5xx refusal
    is the door's own answer, anything else a crash."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, ABORT_SECONDS)
    start = time.process_time()
    try:
        target.run(data)
    except Refusal as error:
        if error.status >= 500:
            return _crashed(start, error)
    except TocsinError:
        pass
    except Exception as error:
        return _crashed(start, error)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(time.process_time() - start)


def _crashed(start: float, error: BaseException) -> Outcome:
    seconds = time.process_time() - start
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/tocsin/" in f.filename] or frames
    where = f" at {Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else ""
    trace = "".join(traceback.format_exception(error))
    return Outcome(seconds, f"{type(error).__name__}{where}", trace)


# --- files -----------------------------------------------------------------------------------

@functools.cache
def _folder() -> Path:
    """A folder for the file doors, with a real certificate for the sources file to pin."""
    shm = Path("/dev/shm")  # memory: a file written per input costs a tenth of one on disk
    folder = Path(tempfile.mkdtemp(prefix="tocsin-fuzz-", dir=shm if shm.is_dir() else None))
    atexit.register(shutil.rmtree, folder, True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz.example")])
    start = datetime(2020, 1, 1, tzinfo=UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(start)
            .not_valid_after(start + timedelta(days=3650)).sign(key, hashes.SHA256()))
    (folder / "signer.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return folder


def _file(name: str, data: bytes) -> Path:
    path = _folder() / name
    path.write_bytes(data)
    return path


def scheme_toml(data: bytes) -> None:
    load_scheme_file(_file("scheme.toml", data))


def areas_csv(data: bytes) -> None:
    read_areas_csv(_file("areas.csv", data))


GEOJSON_MAPPINGS = (GeoJSONMapping(), GeoJSONMapping(names={"en": "ADM1_EN"}, code="ADM1_PCODE",
                                                     default_parent="KZ", repair=True))


def areas_geojson(data: bytes) -> None:
    """Both ways the CLI reads GeoJSON: name:LANG properties as they are, and mapped
    properties with --repair-geometry."""
    path = _file("areas.geojson", data)
    for mapping in GEOJSON_MAPPINGS:
        with contextlib.suppress(InvalidInput):
            read_areas_geojson(path, mapping)


def change_toml(data: bytes) -> None:
    read_change_file(_file("change.toml", data), default_sender="fuzz")


def change_json(data: bytes) -> None:
    read_change_file(_file("change.json", data), default_sender="fuzz")


def sources_toml(data: bytes) -> None:
    read_sources(_file("sources.toml", data))


def cap_xml(data: bytes) -> None:
    """The import door: the hardened reader, the checker, then the reader of alerts."""
    importing.receive(data, "fuzz.xml")


# --- the API ---------------------------------------------------------------------------------

QUERY_TABLES: tuple[dict[str, ParamKind], ...] = (
    api.LEVELS_PARAMS, api.AREA_PARAMS, api.DECLARATIONS_PARAMS, api.HISTORY_PARAMS,
    api.NO_PARAMS, {"limit": ParamKind.LIMIT}, {"owner": ParamKind.TEXT},
    {"status": ParamKind.TEXT, "limit": ParamKind.LIMIT},
    site.PAGE_PARAMS, site.HISTORY_PAGE_PARAMS, site.SEARCH_PAGE_PARAMS,
)


def api_query(data: bytes) -> None:
    """A raw query string as Starlette decodes it, against every endpoint's parameters."""
    params = list(QueryParams(data).multi_items())
    for allowed in QUERY_TABLES:
        with contextlib.suppress(InvalidInput):
            parse_query(params, allowed)


@functools.cache
def _demo() -> tuple[World, site.Site]:
    """The demo's January 2022, as the console's world and the public site's snapshot."""
    folder = _folder()
    engine = connect(f"sqlite:///{folder}/demo.sqlite3")
    demo.replay(engine, set_up_at=demo.COUNTRYWIDE_AT - timedelta(days=1))
    config = settings.Settings(database_url="sqlite://", sender="fuzz", cap_sender="fuzz",
                               public_url="https://levels.example.kz",
                               keys_dir=str(folder / "keys"))
    site = build(engine, demo.STEP_DOWN_EFFECTIVE + timedelta(days=1), config=config).site
    return queries.load_world(engine), site


def api_public(data: bytes) -> None:
    """A request line's target, PATH?QUERY, rendered by the public site (as the server does,
    minus the socket): the query strings of every public document and page."""
    target = data.decode("latin-1")
    path, _, query = target.partition("?")
    _demo()[1].render(unquote(path) or "/", list(QueryParams(query).multi_items()))


def _request(body: bytes, media: str) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-type", media.encode()),
                         (b"content-length", str(len(body)).encode())]}
    return Request(scope, receive)


def _body(data: bytes) -> Document:
    """`json_body` on a request whose body is all there: it never waits, so it is driven
    without an event loop (asyncio.run would cost more than the parse)."""
    coroutine = json_body(_request(data, "application/json"))
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(Document, done.value)
    coroutine.close()
    raise RuntimeError("json_body waited for more of a body that was all there")


def _create(body: Document) -> None:
    body.boolean("submit", True)
    body.optional_text("break_glass")
    fields = {k: v for k, v in body.data.items() if k not in ("submit", "break_glass")}
    parse_declaration(Document(fields, "request body"), default_sender="fuzz")


def _add_user(body: Document) -> None:
    body.reject_unknown({"name", "password", "roles", "areas", "break_glass", "email"})
    body.text("name"), body.text("password"), parse_roles(body.strings("roles"))
    body.strings("areas", []), body.boolean("break_glass", False), body.optional_text("email")


def _set_user(body: Document) -> None:
    body.reject_unknown({"roles", "areas", "break_glass", "disabled", "password", "email"})
    data = body.data
    if "roles" in data:
        parse_roles(body.strings("roles"))
    if "areas" in data:
        body.strings("areas")
    for flag in ("break_glass", "disabled"):
        if flag in data:
            body.boolean(flag, False)
    if "password" in data:
        body.text("password")
    if "email" in data:
        body.optional_text("email")


def _create_token(body: Document) -> None:
    body.reject_unknown({"user", "scopes", "label", "expires"})
    expires = body.optional_text("expires")
    if expires:
        parse_duration(expires, "expires")
    body.text("user", "someone"), parse_scopes(body.strings("scopes"))
    body.text("label", "token")


def _known(keys: set[str], *reads: Callable[[Document], object]) -> Callable[[Document], None]:
    def parse(body: Document) -> None:
        body.reject_unknown(keys)
        for read in reads:
            read(body)
    return parse


BODY_PARSERS: tuple[Callable[[Document], object], ...] = (
    _create,
    lambda body: parse_declaration(body, default_sender="fuzz"),  # edit
    _known({"break_glass"}, lambda b: b.optional_text("break_glass")),  # submit
    _known({"revision"}, lambda b: b.integer("revision")),  # approve
    _known({"reason"}, lambda b: b.text("reason")),  # reject
    _known({"reason", "break_glass"}, lambda b: b.text("reason"),
           lambda b: b.optional_text("break_glass")),  # cancel
    _add_user, _set_user, _known(set()),  # issue a reset link
    _known({"token", "password"}, lambda b: b.text("token"), lambda b: b.text("password")),
    _create_token, parse_webhook, parse_push,
)


def api_body(data: bytes) -> None:
    """A JSON request body through the API's one body reader, then every endpoint's parse."""
    body = _body(data)
    for parse in BODY_PARSERS:
        with contextlib.suppress(InvalidInput):
            parse(body)


# --- the console -----------------------------------------------------------------------------

ISSUER = Principal("fuzz", frozenset(Role), ("KZ",), break_glass=True)
PREVIEW_AT = demo.STEP_DOWN_EFFECTIVE + timedelta(days=1)


def _form(data: bytes) -> dict[str, list[str]]:
    """The console's reading of a posted form (`Console.form`, after its CSRF check)."""
    fields: dict[str, list[str]] = {}
    for key, value in parse_qsl(data.decode("utf-8", errors="replace"), keep_blank_values=True):
        fields.setdefault(key, []).append(value)
    return fields


def console_form(data: bytes) -> None:
    """A posted form through each of the console's forms: the declaration (with its
    preview, checked against the demo's world), a user, a token, approving."""
    fields = _form(data)
    world = _demo()[0]
    for parse in (
        lambda: forms.candidate(
            forms.seen_by(world, ISSUER), ISSUER,
            parse_declaration(Document(forms.request_document(fields), "form"),
                              default_sender="fuzz"), now=PREVIEW_AT),
        lambda: parse_roles(fields.get("roles", [])),
        lambda: parse_scopes(fields.get("scopes", [])),
        lambda: forms.one(fields, "expires") and parse_duration(forms.one(fields, "expires"),
                                                                "lifetime"),
    ):
        with contextlib.suppress(InvalidInput):
            parse()


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("cap-xml", "CAP XML: parse, check, read (the import door)", cap_xml),
    Target("scheme-toml", "scheme TOML files", scheme_toml),
    Target("areas-csv", "area CSV files", areas_csv),
    Target("areas-geojson", "area GeoJSON files, plain and mapped with repair", areas_geojson),
    Target("change-toml", "change files (TOML)", change_toml),
    Target("change-json", "change files (JSON)", change_json),
    Target("sources-toml", "the sources TOML file", sources_toml),
    Target("api-query", "query strings against every endpoint's parameters", api_query),
    Target("api-public", "PATH?QUERY rendered by the public site", api_public),
    Target("api-body", "JSON bodies through every API endpoint's parse", api_body),
    Target("console-form", "console forms, with the declaration preview", console_form),
)}


def cases(target: str) -> list[Path]:
    """The kept cases of `target`, in name order."""
    folder = CASES / target
    return sorted(folder.glob("*.bin")) if folder.is_dir() else []
