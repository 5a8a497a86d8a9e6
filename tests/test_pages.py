"""The public HTML pages, rendered from the January 2022 replay (plus one private draft)."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tocsin import demo
from tocsin.domain.declaration import Cancellation, DeclarationRequest, Statement
from tocsin.domain.errors import NotFound
from tocsin.render import i18n, urls
from tocsin.render.pages import (
    PageContext,
    area_page,
    declaration_page,
    error_page,
    history_page,
    levels_css,
    overview_page,
)
from tocsin.service import commands, queries
from tocsin.service.queries import World
from tocsin.store.database import connect

JAN_8 = datetime(2022, 1, 8, 6, tzinfo=UTC)
JAN_15 = datetime(2022, 1, 15, 6, tzinfo=UTC)
DRAFTED_AT = datetime(2022, 1, 20, tzinfo=UTC)
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, demo.Replay, str]]:
    path = tmp_path_factory.mktemp("pages") / "demo.sqlite3"
    engine = connect(f"sqlite:///{path}")
    result = demo.replay(engine, set_up_at=demo.COUNTRYWIDE_AT)
    [draft] = commands.declare(engine, [DeclarationRequest(
        scheme=demo.SCHEME, level="moderate", areas=("KZ-75",),
        texts={"en": Statement("A draft nobody may see")}, sender="Test authority")],
        now=DRAFTED_AT, actor="test", publish=False)
    yield queries.load_world(engine), result, draft.id
    engine.dispose()


@pytest.fixture(scope="module")
def world(replay: tuple[World, demo.Replay, str]) -> World:
    return replay[0]


def ctx(lang: str = "en", at: datetime = JAN_8, *, time_travel: bool = False) -> PageContext:
    return PageContext(lang=lang, at=at, now=at, time_travel=time_travel)


# ---------------------------------------------------------------------------- parsing helpers

class Page(HTMLParser):
    """Checks nesting of every non-void element and collects what the tests look at."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.text: list[str] = []
        self._script: dict[str, str] | None = None
        self.feed(html)
        self.close()
        if self.stack:
            self.problems.append(f"unclosed: {self.stack}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag == "script":
            self._script = attributes
            self.scripts.append((attributes, ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts[-1] = (self.scripts[-1][0], self.scripts[-1][1] + data)
        else:
            self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for t, attrs in self.tags if t == tag]

    @property
    def words(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text))


def inside(html: str, tag: str, css_class: str | None = None) -> str:
    """The text of the first <tag> (with that class), tags stripped."""
    attr = f' class="{css_class}"' if css_class else ""
    match = re.search(rf"<{tag}{attr}[^>]*>(.*?)</{tag}>", html, re.S)
    assert match, f"no <{tag}{attr}>"
    return re.sub(r"<[^>]+>", "", match.group(1))


def all_pages(world: World, replay: demo.Replay, context: PageContext) -> dict[str, str]:
    return {
        "overview": overview_page(world, context),
        "area": area_page(world, "KZ-75", context),
        "country": area_page(world, "KZ", context),
        "declaration": declaration_page(world, replay.countrywide.id, context),
        "history": history_page(world, context, area="KZ-75", scheme=None, start=None, end=None),
        "error": error_page(context, 404, "area 'KZ-99' is not known"),
    }


# ---------------------------------------------------------------------------- area page

@pytest.mark.parametrize(("lang", "name", "label", "inherited"), [
    ("en", "Almaty", "Critical (red)", "inherited"),
    ("ru", "Алматы", "Критический (красный)", "унаследован"),
    ("kk", "Алматы", "Қатерлі (қызыл)", "мұраланған"),
])
def test_almaty_on_8_january_is_critical_inherited_from_the_country(
        world: World, lang: str, name: str, label: str, inherited: str) -> None:
    html = area_page(world, "KZ-75", ctx(lang))
    assert f'<html lang="{lang}">' in html
    assert inside(html, "h1") == name
    assert '<span class="chip lv-kz-terror-critical">' + label + "</span>" in html
    why = inside(html, "p", "why")
    assert name in why and inherited in why
    assert i18n.format_date(demo.COUNTRYWIDE_AT, "Asia/Almaty", lang) in html
    level = world.scheme("kz-terror").level("critical")
    assert level.measures[lang][0] in html and level.guidance[lang][0] in html
    assert i18n.ui(lang)["until_further_notice"] in html


def test_almaty_explanation_in_english_names_the_countrywide_declaration(world: World) -> None:
    why = inside(area_page(world, "KZ-75", ctx()), "p", "why")
    assert why.startswith("Almaty has this level because the countrywide declaration of "
                          "7 January 2022 for Kazakhstan is in effect (inherited")


@pytest.mark.parametrize("lang", urls.PAGE_LANGUAGES)
def test_almaty_on_15_january_has_its_own_declaration(world: World, lang: str) -> None:
    html = area_page(world, "KZ-75", ctx(lang, JAN_15))
    why = inside(html, "p", "why")
    assert not re.search("inherited|унаследован|мұраланған", why)
    assert re.search(r'<p class="level"><span class="chip lv-kz-terror-critical">', html)


def test_area_page_shows_term_sender_timeline_and_badge(
        world: World, replay: tuple[World, demo.Replay, str]) -> None:
    countrywide = replay[1].countrywide
    html = area_page(world, "KZ-75", ctx())
    page = Page(html)
    assert '<time datetime="2022-01-07T03:00:00Z">7 January 2022, 09:00 UTC+6</time>' in html
    assert demo.SENDER in html
    assert {"href": urls.declaration("en", countrywide.id)} in page.all("a")
    timeline = inside(html, "ol", "timeline")
    assert timeline.index("Critical (red)") < timeline.index("No level")  # newest first
    assert {"src": "/en/badge/kz-terror/KZ-75.svg", "alt": "Terrorism threat level: Almaty"} in \
        page.all("img")
    snippet = inside(html, "textarea").replace("&lt;", "<").replace("&gt;", ">") \
        .replace("&#34;", '"')
    assert snippet == ('<a href="/en/areas/KZ-75"><img src="/en/badge/kz-terror/KZ-75.svg" '
                       'alt="Terrorism threat level: Almaty"></a>')
    assert page.all("textarea") == [{"id": "embed-kz-terror", "class": "snippet", "rows": "3",
                                     "readonly": ""}]


def test_a_region_that_stepped_down_shows_its_end_and_a_scheduled_timeline(world: World) -> None:
    html = area_page(world, "KZ-15", ctx("en", JAN_8))
    timeline = inside(html, "ol", "timeline")
    assert "Moderate (yellow)" in timeline and "(scheduled)" in timeline
    jan15 = area_page(world, "KZ-15", ctx("en", JAN_15))
    assert "Moderate (yellow)" in inside(jan15, "p", "level")
    # 10 days from 14 January 00:00 in Almaty, shown in Aktobe's time zone
    assert '<time datetime="2022-01-23T18:00:00Z">23 January 2022, 23:00 UTC+5</time>' in jan15


def test_unknown_area_is_not_found(world: World) -> None:
    with pytest.raises(NotFound, match="KZ-99"):
        area_page(world, "KZ-99", ctx())


# ---------------------------------------------------------------------------- overview

def test_overview_groups_areas_by_level_highest_first(world: World) -> None:
    html = overview_page(world, ctx("en", JAN_15))
    groups = re.findall(r'<section class="group" data-level="([a-z-]+)">(.*?)</section>',
                        html, re.S)
    assert [key for key, _ in groups] == ["critical", "high", "moderate", "none"]
    members = {key: set(re.findall(r'href="/en/areas/([A-Z0-9-]+)"', body))
               for key, body in groups}
    assert members["critical"] == set(demo.CRITICAL)
    assert members["high"] == set(demo.HIGH_14_DAYS)
    assert members["moderate"] == {*demo.MODERATE_10_DAYS, *demo.MODERATE_14_DAYS,
                                   *demo.MODERATE_OPEN}
    assert members["none"] == {"KZ"}
    assert '<span class="chip lv-none">No level</span>' in html
    page = Page(html)
    [image] = page.all("img")
    assert image["src"] == "/en/map/kz-terror.svg" and "Terrorism threat level" in image["alt"]


def test_overview_on_8_january_has_every_area_critical(world: World) -> None:
    html = overview_page(world, ctx("ru"))
    groups = re.findall(r'data-level="([a-z-]+)"', html)
    assert groups == ["critical"]
    assert html.count('href="/ru/areas/') == len(world.tree)


def test_overview_weighs_at_most_14_kb_compressed(world: World) -> None:
    for lang in urls.PAGE_LANGUAGES:
        for at in (JAN_8, JAN_15):
            size = len(gzip.compress(overview_page(world, ctx(lang, at)).encode()))
            assert size <= 14 * 1024, (lang, at, size)


# ---------------------------------------------------------------------------- every page

@pytest.mark.parametrize("lang", urls.PAGE_LANGUAGES)
def test_every_page_is_well_formed_with_landmarks_and_no_inline_code(
        world: World, replay: tuple[World, demo.Replay, str], lang: str) -> None:
    for name, html in all_pages(world, replay[1], ctx(lang)).items():
        page = Page(html)
        assert page.problems == [], name
        assert html.startswith("<!doctype html>\n<html lang=")
        for tag in ("header", "main", "footer"):
            assert len(page.all(tag)) == 1, (name, tag)
        assert len(page.all("nav")) >= 2, name
        assert {"rel": "stylesheet", "href": "/static/tocsin.css"} in page.all("link")
        assert {"rel": "stylesheet", "href": "/levels.css"} in page.all("link")
        assert page.scripts == [({"src": "/static/live.js", "defer": ""}, "")], name
        for tag, attrs in page.tags:
            assert "style" not in attrs, (name, tag)
            assert not [a for a in attrs if a.startswith("on")], (name, tag)
        assert "<style" not in html
        assert {"id": "live-status", "class": "visually-hidden", "role": "status",
                "aria-live": "polite", "data-message": i18n.ui(lang)["level_updated"]} in \
            page.all("div"), name
        for time in page.all("time"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", time["datetime"])


def test_language_switch_links_to_the_same_page_in_each_language(world: World) -> None:
    page = Page(area_page(world, "KZ-75", ctx("ru")))
    switch = [a for a in page.all("a") if "hreflang" in a]
    assert switch == [
        {"href": "/kk/areas/KZ-75", "hreflang": "kk", "lang": "kk"},
        {"href": "/ru/areas/KZ-75", "hreflang": "ru", "lang": "ru", "aria-current": "page"},
        {"href": "/en/areas/KZ-75", "hreflang": "en", "lang": "en"},
    ]
    html = area_page(world, "KZ-75", ctx("ru"))
    for label in ("Қазақша", "Русский", "English"):
        assert f">{label}</a>" in html


def test_live_pages_are_marked_live_and_time_travel_pages_are_not(world: World) -> None:
    assert '<main id="main" data-live="true">' in overview_page(world, ctx())
    assert '<main id="main">' in overview_page(world, ctx(time_travel=True))
    assert '<main id="main">' in error_page(ctx(), 404, "nothing here")


def test_time_travel_pages_show_a_banner_and_keep_at_on_every_page_link(
        world: World, replay: tuple[World, demo.Replay, str]) -> None:
    context = ctx("en", JAN_8, time_travel=True)
    for name, html in all_pages(world, replay[1], context).items():
        page = Page(html)
        banner = inside(html, "p", "banner")
        local = "06:00 UTC" if name == "error" else "12:00 UTC+6"  # an error knows no area
        assert banner.startswith(f"Levels as of 8 January 2022, {local}"), name
        assert "see the current levels" in banner
        [current] = re.findall(r'<p class="banner">.*?<a href="([^"]+)"', html)
        assert "at=" not in current and current.startswith("/en/")
        pages = [a["href"] for a in page.all("a") + page.all("link")
                 if re.match(r"^/(kk|ru|en)/", a.get("href", ""))]
        assert len(pages) >= 6, name
        for href in pages:
            query = parse_qs(urlsplit(href).query)
            if href == current:
                continue
            assert query.get("at") == ["2022-01-08T06:00:00Z"], (name, href)
    history = history_page(world, context, area=None, scheme=None, start=None, end=None)
    assert '<input type="hidden" name="at" value="2022-01-08T06:00:00Z">' in history


def test_time_travel_shows_only_what_was_published_by_then(
        world: World, replay: tuple[World, demo.Replay, str]) -> None:
    countrywide = replay[1].countrywide
    context = ctx("en", JAN_8, time_travel=True)
    history = history_page(world, context, area=None, scheme=None, start=None, end=None)
    assert re.findall(r'data-declaration="([^"]+)"', history) == [countrywide.id]
    page = declaration_page(world, countrywide.id, context)
    assert "Replaced by" not in page
    live = declaration_page(world, countrywide.id, ctx("en", JAN_8))
    assert "Replaced by" in live


def test_output_is_byte_identical_across_calls_and_world_loads(
        world: World, replay: tuple[World, demo.Replay, str], tmp_path: Path) -> None:
    first = all_pages(world, replay[1], ctx("kk", JAN_15))
    assert all_pages(world, replay[1], ctx("kk", JAN_15)) == first
    assert levels_css(world) == levels_css(world)
    reloaded = World(world.tree, world.schemes, dict(world.declarations))
    assert all_pages(reloaded, replay[1], ctx("kk", JAN_15)) == first


# ---------------------------------------------------------------------------- levels.css

def _luminance(colour: str) -> float:
    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    if len(colour) == 4:
        colour = "#" + "".join(ch * 2 for ch in colour[1:])
    r, g, b = (channel(colour[i:i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_every_level_class_has_contrast_of_at_least_4_5(world: World) -> None:
    css = levels_css(world)
    rules = re.findall(r"\.(lv-[a-z0-9-]+)\{background:(#[0-9A-Fa-f]{6});color:(#[0-9A-Fa-f]{6})\}",
                       css)
    expected = {f"lv-{s.key}-{lv.key}" for s in world.schemes.values() for lv in s.levels}
    assert {name for name, _, _ in rules} == expected | {"lv-none"}
    for name, background, text in rules:
        light, dark = sorted((_luminance(background), _luminance(text)), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 4.5, name
    assert ".lv-kz-terror-critical{background:#D7191C;color:#FFFFFF}" in css
    assert ".lv-kz-terror-moderate{background:#FFD400;color:#000000}" in css


# ---------------------------------------------------------------------------- declaration

def test_declaration_permalink_shows_status_areas_and_what_replaced_it(
        world: World, replay: tuple[World, demo.Replay, str]) -> None:
    result = replay[1]
    html = declaration_page(world, result.countrywide.id, ctx("en", JAN_15))
    assert inside(html, "h1") == result.countrywide.texts["en"].headline
    assert "Replaced on 14 January 2022, 00:00 UTC+6" in html
    for new in result.step_down:
        assert f'href="{urls.declaration("en", new.id)}"' in html
    assert 'href="/en/areas/KZ">Kazakhstan</a>' in html
    assert f'href="{urls.api_declaration(result.countrywide.id)}"' in html
    assert demo.SENDER in html and "until further notice" in html
    step = declaration_page(world, result.step_down[0].id, ctx("ru", JAN_15))
    assert f'href="{urls.declaration("ru", result.countrywide.id)}"' in step
    assert "Заменяет" in step and "Действует" in step


def test_declaration_in_another_language_says_which_is_shown(
        world: World, replay: tuple[World, demo.Replay, str]) -> None:
    original = replay[1].countrywide
    only_ru = replace(original, texts={"ru": original.texts["ru"]},
                      cancellation=Cancellation(utc(2022, 1, 9), "Threat over", "tester"))
    changed = World(world.tree, world.schemes, {**world.declarations, original.id: only_ru})
    html = declaration_page(changed, original.id, ctx("en", JAN_15))
    assert '<h1 lang="ru">' in html
    assert "There is no English text; shown in Russian." in html
    assert "Cancelled on 9 January 2022, 06:00 UTC+6. Reason: Threat over" in html


def test_drafts_and_unknown_declarations_are_not_found(
        world: World, replay: tuple[World, demo.Replay, str]) -> None:
    draft_id = replay[2]
    with pytest.raises(NotFound):
        declaration_page(world, draft_id, ctx())
    with pytest.raises(NotFound):
        declaration_page(world, "20220101-00000000", ctx())
    history = history_page(world, ctx("en", DRAFTED_AT), area=None, scheme=None, start=None,
                           end=None)
    assert draft_id not in history and "A draft nobody may see" not in history


# ---------------------------------------------------------------------------- history

def _ids(html: str) -> list[str]:
    return re.findall(r'data-declaration="([^"]+)"', html)


def test_history_filters_by_area_scheme_and_dates(
        world: World, replay: tuple[World, demo.Replay, str]) -> None:
    result = replay[1]
    by_id = {d.id: d for d in result.step_down}
    late = ctx("en", JAN_15)
    everything = _ids(history_page(world, late, area=None, scheme=None, start=None, end=None))
    assert len(everything) == 6 and everything[-1] == result.countrywide.id  # newest first

    astana = _ids(history_page(world, late, area="KZ-71", scheme=None, start=None, end=None))
    assert astana[-1] == result.countrywide.id and len(astana) == 2
    assert by_id[astana[0]].level == "high"

    country = _ids(history_page(world, late, area="KZ", scheme=None, start=None, end=None))
    assert country == [result.countrywide.id]

    assert _ids(history_page(world, late, area=None, scheme="uk-terror", start=None,
                             end=None)) == []
    assert len(_ids(history_page(world, late, area=None, scheme="kz-terror", start=None,
                                 end=None))) == 6

    after = _ids(history_page(world, late, area=None, scheme=None, start=utc(2022, 1, 10),
                              end=None))
    assert set(after) == set(by_id)
    before = _ids(history_page(world, late, area=None, scheme=None, start=None,
                               end=utc(2022, 1, 10)))
    assert before == [result.countrywide.id]
    # [start, end): a declaration effective exactly at `end` is left out.
    assert _ids(history_page(world, late, area=None, scheme=None, start=None,
                             end=demo.COUNTRYWIDE_AT)) == []


def test_history_form_keeps_the_filters(world: World) -> None:
    html = history_page(world, ctx("kk", JAN_15), area="KZ-75", scheme="kz-terror",
                        start=utc(2022, 1, 6, 18), end=utc(2022, 1, 31, 18))
    page = Page(html)
    assert page.problems == []
    assert '<form class="filter" method="get" action="/kk/history"' in html
    assert '<option value="KZ-75" selected>' in html
    assert '<option value="kz-terror" selected>' in html
    assert {"id": "f-from", "name": "from", "type": "date", "value": "2022-01-07"} in \
        page.all("input")
    assert {"id": "f-to", "name": "to", "type": "date", "value": "2022-02-01"} in \
        page.all("input")
    switch = [a["href"] for a in page.all("a") if "hreflang" in a]
    assert switch[1] == "/ru/history?area=KZ-75&scheme=kz-terror&from=2022-01-07&to=2022-02-01"


def test_history_refuses_unknown_area_and_scheme(world: World) -> None:
    with pytest.raises(NotFound):
        history_page(world, ctx(), area="KZ-99", scheme=None, start=None, end=None)
    with pytest.raises(NotFound):
        history_page(world, ctx(), area=None, scheme="nope", start=None, end=None)


# ---------------------------------------------------------------------------- errors, i18n

@pytest.mark.parametrize(("status", "heading"), [
    (404, "Not found"), (400, "The request is not valid"), (500, "Something went wrong")])
def test_error_page_names_the_problem(status: int, heading: str) -> None:
    html = error_page(ctx(), status, "area 'KZ-99' is not known <b>")
    assert inside(html, "h1") == heading
    assert "area &#39;KZ-99&#39; is not known &lt;b&gt;" in html
    assert Page(html).problems == []


def test_every_language_has_every_string_and_dates_read_naturally() -> None:
    keys = set(i18n.UI["en"])
    for lang in urls.PAGE_LANGUAGES:
        assert set(i18n.UI[lang]) == keys, lang
        assert len(i18n.MONTHS[lang]) == 12
    day = utc(2022, 1, 7, 3)
    assert i18n.format_date(day, "Asia/Almaty", "en") == "7 January 2022"
    assert i18n.format_date(day, "Asia/Almaty", "ru") == "7 января 2022 г."
    assert i18n.format_date(day, "Asia/Almaty", "kk") == "2022 жылғы 7 қаңтар"
    assert i18n.format_time(day, "Asia/Almaty", "en") == "7 January 2022, 09:00 UTC+6"
    assert i18n.format_time(day, None, "en") == "7 January 2022, 03:00 UTC"
    assert i18n.format_time(day, "Asia/Kolkata", "en") == "7 January 2022, 08:30 UTC+5:30"
    assert i18n.format_time(day, "America/New_York", "en") == "6 January 2022, 22:00 UTC-5"
