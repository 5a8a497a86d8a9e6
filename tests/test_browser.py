"""The public pages in a real browser: Debian's Chromium driven by Playwright.

The user story: a reader in Almaty opens the overview as it was on 8 January 2022, switches
to Kazakh, follows the link to Almaty and reads why the level is critical; a reader with a
page open sees a new level appear without reloading; a reader without JavaScript still sees
the levels and can search the history.

Needs /usr/bin/chromium (scripts/install-browser installs Debian's package). Without it these
tests are skipped, unless TOCSIN_REQUIRE_BROWSER=1 (as in CI), which makes its absence an
error. Full-page screenshots of every step go to test-artifacts/browser/ (not committed).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    expect,
    sync_playwright,
)
from sqlalchemy import Engine
from tests.smtp_server import running_smtp
from tests.web_server import running

from tocsin import demo, settings
from tocsin.domain.access import Role
from tocsin.domain.declaration import DeclarationRequest, Statement
from tocsin.domain.notify import SubscriptionStatus
from tocsin.domain.times import parse_instant
from tocsin.ingest.areas import read_areas_csv
from tocsin.notify.worker import Worker
from tocsin.render import i18n
from tocsin.service import commands, people, subscriptions
from tocsin.store.database import connect
from tocsin.web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
JAN_8 = "2022-01-08T12:00+06:00"
JAN_8_QUERY = "at=2022-01-08T12:00%2B06:00"
WAIT_MS = 10_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        hint = (f"{CHROMIUM} is missing: run scripts/install-browser "
                "(or: sudo apt-get install chromium)")
        if os.environ.get("TOCSIN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TOCSIN_REQUIRE_BROWSER=1 but {hint}")
        pytest.skip(hint)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def demo_engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh database with the January 2022 replay."""
    engine = connect(f"sqlite:///{tmp_path}/db.sqlite3")
    demo.replay(engine, set_up_at=demo.COUNTRYWIDE_AT)
    yield engine
    engine.dispose()


@pytest.fixture
def base_url(demo_engine: Engine) -> Iterator[str]:
    with running(create_app(demo_engine)) as base:
        yield base


class Console:
    """Errors the page reports: console messages of type error and uncaught exceptions."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location})")


def new_page(browser: Browser, base_url: str, *, javascript: bool = True,
             viewport: dict[str, int] = DESKTOP) -> Page:
    context = browser.new_context(base_url=base_url, locale="en-US", viewport=viewport,
                                  java_script_enabled=javascript,
                                  is_mobile=viewport is PHONE, has_touch=viewport is PHONE)
    return context.new_page()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def at_of(page: Page) -> datetime:
    """The instant in the page URL's ?at=."""
    [at] = parse_qs(urlsplit(page.url).query)["at"]
    return parse_instant(at)


def group_of(page: Page, link_prefix: str) -> Locator:
    """The overview's level group that lists the area whose link starts with `link_prefix`."""
    return page.locator("section.group").filter(
        has=page.locator(f'a[href^="{link_prefix}"]'))


def assert_fits_the_width(page: Page) -> None:
    """No sideways scrolling: nothing is wider than the viewport."""
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the viewport"


def test_a_reader_reads_almaty_in_kazakh_as_on_8_january(browser: Browser,
                                                        base_url: str) -> None:
    page = new_page(browser, base_url)
    console = Console(page)
    try:
        page.goto(f"/?{JAN_8_QUERY}")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        almaty = group_of(page, "/en/areas/KZ-75?")
        expect(almaty).to_have_count(1)
        expect(almaty.locator("h3")).to_contain_text("Critical")
        expect(almaty.locator('a[href^="/en/areas/KZ-75?"]')).to_contain_text("Almaty")
        expect(page.locator("p.banner")).to_be_visible()  # a page about the past says so
        shot(page, "01-overview-en-2022-01-08")

        switch = page.get_by_role("link", name=i18n.LANGUAGE_NAMES["kk"], exact=True)
        expect(switch).to_be_visible()
        switch.click()
        expect(page).to_have_url(re.compile(r"/kk/\?"))
        expect(page.locator("html")).to_have_attribute("lang", "kk")
        assert at_of(page) == parse_instant(JAN_8)
        kk_almaty = group_of(page, "/kk/areas/KZ-75?")
        expect(kk_almaty.locator("h3")).to_contain_text("Қатерлі")
        shot(page, "02-overview-kk-2022-01-08")

        kk_almaty.locator('a[href^="/kk/areas/KZ-75?"]').click()
        expect(page).to_have_url(re.compile(r"/kk/areas/KZ-75\?"))
        assert at_of(page) == parse_instant(JAN_8)
        expect(page.locator("html")).to_have_attribute("lang", "kk")
        section = page.locator('section[data-scheme="kz-terror"]')
        expect(section.locator("p.level")).to_contain_text("Қатерлі")
        why = section.locator("p.why")
        expect(why).to_contain_text("мұраланған")  # i18n._explain_kk: inherited
        expect(why).to_contain_text("Қазақстан")  # … from the countrywide declaration
        shot(page, "03-area-kk-KZ-75-2022-01-08")
        assert console.errors == []
    finally:
        page.context.close()

    phone = new_page(browser, base_url, viewport=PHONE)
    try:
        phone.goto(f"/kk/areas/KZ-75?{JAN_8_QUERY}")
        expect(phone.locator('section[data-scheme="kz-terror"] p.level')).to_contain_text(
            "Қатерлі")
        shot(phone, "04-area-kk-KZ-75-phone-390x844")
        assert_fits_the_width(phone)
        phone.goto(f"/kk/?{JAN_8_QUERY}")
        shot(phone, "05-overview-kk-phone-390x844")
        assert_fits_the_width(phone)
    finally:
        phone.context.close()


def test_an_open_page_shows_a_new_level_without_reloading(browser: Browser, base_url: str,
                                                          demo_engine: Engine) -> None:
    page = new_page(browser, base_url)
    console = Console(page)
    try:
        # The page subscribes to /events once loaded; wait for that before changing anything.
        with page.expect_response(lambda r: urlsplit(r.url).path == "/events",
                                  timeout=WAIT_MS) as events:
            page.goto("/en/areas/KZ-79")
        assert events.value.status == 200
        level = page.locator('section[data-scheme="kz-terror"] p.level')
        expect(level).to_have_text("No level")  # the demo's levels for Shymkent have ended
        shot(page, "06-live-en-KZ-79-before")
        page.evaluate("() => { window.tocsinTestMarker = 'before the change'; }")

        commands.declare(demo_engine, [DeclarationRequest(
            scheme="kz-terror", level="high", areas=("KZ-79",),
            texts={"en": Statement("High level in Shymkent")}, sender="Test")],
            now=datetime.now(UTC), actor="test")

        expect(level).to_contain_text("High", timeout=WAIT_MS)
        assert page.evaluate("() => window.tocsinTestMarker") == "before the change", (
            "the page was reloaded or navigated instead of updated in place")
        expect(page.locator("#live-status")).to_have_text("Level updated", timeout=WAIT_MS)
        expect(page.locator('section[data-scheme="kz-terror"] .senders')).to_contain_text(
            "High level in Shymkent")
        shot(page, "07-live-en-KZ-79-after")
        assert console.errors == []
    finally:
        page.context.close()


def test_without_javascript_the_levels_show_and_the_history_form_works(
        browser: Browser, base_url: str) -> None:
    page = new_page(browser, base_url, javascript=False)
    try:
        page.goto(f"/en/?{JAN_8_QUERY}")
        expect(group_of(page, "/en/areas/KZ-75?").locator("h3")).to_contain_text("Critical")
        shot(page, "08-nojs-overview-en-2022-01-08")

        page.goto("/en/")  # now: Almaty's critical level from 14 January 2022 has no end
        expect(group_of(page, "/en/areas/KZ-75").locator("h3")).to_contain_text("Critical")

        page.goto("/en/areas/KZ-75")
        expect(page.locator('section[data-scheme="kz-terror"] p.level')).to_contain_text(
            "Critical")
        shot(page, "09-nojs-area-en-KZ-75")

        page.goto("/en/history")
        form = page.locator("form.filter")
        form.locator("#f-area").select_option("KZ-75")
        form.locator("#f-scheme").select_option("kz-terror")
        form.locator("#f-from").fill("2022-01-01")
        form.locator("#f-to").fill("2022-02-01")
        with page.expect_request(lambda r: urlsplit(r.url).path == "/en/history") as sent:
            form.get_by_role("button", name="Show").click()
        assert sent.value.method == "GET"
        query = parse_qs(urlsplit(sent.value.url).query)
        assert query["area"] == ["KZ-75"] and query["from"] == ["2022-01-01"]
        page.wait_for_load_state()
        entries = page.locator("ol.entries > li")
        # The countrywide declaration of 7 January and the one of 14 January for Almaty.
        expect(entries).to_have_count(2)
        expect(entries.first).to_contain_text("Critical")
        expect(page.locator("#f-area")).to_have_value("KZ-75")  # the form keeps the filter
        shot(page, "10-nojs-history-en-KZ-75")
    finally:
        page.context.close()


def sign_in(page: Page, name: str, password: str) -> None:
    page.goto("/console")
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()


@pytest.fixture
def authority_base(tmp_path: Path) -> Iterator[str]:
    """A fresh database with an issuer and an approver for the Almaty region, served."""
    engine = connect(f"sqlite:///{tmp_path}/authority.sqlite3")
    at = datetime.now(UTC)
    commands.initialise(engine, now=at, actor="local-operator:test")
    commands.import_areas(engine, read_areas_csv(demo.kazakhstan_areas_file()), now=at,
                          actor="local-operator:test")
    for name, role in (("aigerim", Role.ISSUER), ("nurlan", Role.APPROVER)):
        people.add_user(engine, name, PASSWORD, [role], ["KZ-19"], break_glass=False, now=at,
                        by=None, actor="local-operator:test")
    with running(create_app(engine)) as base:
        yield base
    engine.dispose()


PASSWORD = "a long test passphrase"


def test_two_people_put_almaty_region_on_high_through_the_console(
        browser: Browser, authority_base: str) -> None:
    """The two-person rule end to end: an issuer for the Almaty region drafts high and
    submits; it waits; an approver reads the same preview and approves; the public page
    shows it."""
    base_url, password = authority_base, PASSWORD
    issuer = new_page(browser, base_url)
    approver = new_page(browser, base_url)
    reader = new_page(browser, base_url)
    issuer_console, approver_console = Console(issuer), Console(approver)
    try:
        sign_in(issuer, "aigerim", password)
        issuer.get_by_role("link", name="Declare").click()
        issuer.get_by_label("Level").select_option("kz-terror/high")
        expect(issuer.get_by_role("checkbox", name=re.compile("Astana"))).to_be_disabled()
        issuer.get_by_role("checkbox", name=re.compile("KZ-19")).check()
        headline = "High terrorism threat level in the Almaty region"
        issuer.locator("#text-en-headline").fill(headline)
        issuer.locator("#text-en-instructions").fill("Avoid crowded places.")
        issuer.get_by_role("button", name="Preview").click()
        preview = issuer.locator("section.preview")
        expect(preview).to_contain_text("Needs a second person's approval")
        expect(preview.locator(".public-preview h1")).to_have_text(headline)
        expect(preview.locator("pre.cap")).to_contain_text("<severity>Severe</severity>")
        shot(issuer, "10-console-issuer-preview")
        issuer.get_by_role("button", name="Submit").click()
        expect(issuer.locator("dl.workflow")).to_contain_text("waiting for approval")
        declaration_id = issuer.url.rsplit("/", 1)[-1]
        expect(issuer.get_by_role("button", name="Approve and publish")).to_have_count(0)

        reader.goto("/en/areas/KZ-19")
        live_level = reader.locator('section[data-scheme="kz-terror"] p.level')
        expect(live_level).to_have_text("No level")

        sign_in(approver, "nurlan", password)
        waiting = approver.locator("table.rows").filter(has_text="Waiting for my decision")
        waiting.get_by_role("link", name=declaration_id).click()
        expect(approver.locator(".public-preview h1")).to_have_text(headline)
        shot(approver, "11-console-approver-reads")
        approver.get_by_role("button", name="Approve and publish").click()
        expect(approver.locator("dl.workflow")).to_contain_text("published")

        # The reader's open page (JavaScript on) updates itself from /events.
        expect(live_level).to_contain_text("High", timeout=WAIT_MS)
        reader.context.close()
        reader = new_page(browser, base_url, javascript=False)  # a fresh cache
        reader.goto("/en/areas/KZ-19")
        expect(reader.locator('section[data-scheme="kz-terror"] p.level')).to_contain_text(
            "High")
        reader.goto(f"/en/declarations/{declaration_id}")
        expect(reader.locator("h1")).to_have_text(headline)
        shot(reader, "12-public-after-approval")
        assert issuer_console.errors == [] and approver_console.errors == []
    finally:
        for page in (issuer, approver, reader):
            page.context.close()


def test_a_reader_subscribes_by_e_mail_and_confirms_from_the_message(
        browser: Browser, demo_engine: Engine, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The e-mail form of an area page, the confirmation message through a real SMTP server,
    and its link opened in the browser: a page with a button, then confirmed."""
    keys_dir = tmp_path / "keys"
    monkeypatch.setenv("TOCSIN_KEYS_DIR", str(keys_dir))
    with running_smtp() as smtp, running(create_app(demo_engine)) as base:
        page = new_page(browser, base)
        console = Console(page)
        try:
            page.goto("/en/areas/KZ-75")
            form = page.locator("form.subscribe")
            form.get_by_label("Your e-mail address").fill("reader@example.kz")
            shot(page, "13-subscribe-form-en-KZ-75")
            form.get_by_role("button", name="Subscribe by e-mail").click()
            expect(page.locator("h1")).to_have_text("Check your inbox")
            expect(page.get_by_role("link", name="Back to Almaty")).to_be_visible()
            shot(page, "14-subscribe-check-inbox")

            config = settings.Settings(
                database_url=demo_engine.url.render_as_string(hide_password=False),
                sender="t", keys_dir=str(keys_dir), smtp_url=smtp.url, public_url=base)
            with ThreadPoolExecutor(1) as pool:  # Playwright's loop owns this thread
                pool.submit(asyncio.run, Worker(demo_engine, config).once()).result()
            [received] = smtp.messages()
            assert received.rcpt_tos == ("reader@example.kz",)
            text = received.message.get_body(("plain",))
            assert text is not None
            [link] = re.findall(rf"{re.escape(base)}/subscriptions/\S+/confirm\?sig=\S+",
                                str(text.get_content()))

            page.goto(link)
            expect(page.locator("h1")).to_have_text("Confirm your subscription")
            [pending] = subscriptions.list_subscriptions(demo_engine, owner="public")
            assert pending.status is SubscriptionStatus.PENDING
            page.get_by_role("button", name="Confirm").click()
            expect(page.locator("h1")).to_have_text("Subscription confirmed")
            expect(page.get_by_role("link", name="Unsubscribe")).to_be_visible()
            shot(page, "15-subscription-confirmed")
            [active] = subscriptions.list_subscriptions(demo_engine, owner="public")
            assert active.status is SubscriptionStatus.ACTIVE
            assert console.errors == []
        finally:
            page.context.close()
