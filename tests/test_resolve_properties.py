"""Property tests: the resolver agrees with a brute-force reading of the effective-level rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.domain.area import Area, AreaKind, AreaTree
from tocsin.domain.declaration import Cancellation, Declaration, Statement, Status
from tocsin.domain.resolve import (
    Effective,
    SchemeHistory,
    effective_level,
    effective_levels,
    period_at,
    timeline,
)
from tocsin.domain.scheme import Scheme
from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file

SCHEMES = {s.key: s for s in (load_scheme_file(p)[0] for p in builtin_scheme_files())}
KZ, METEO = SCHEMES["kz-terror"], SCHEMES["meteoalarm"]
T0 = datetime(2024, 3, 1, tzinfo=UTC)
GRID = [T0 + timedelta(hours=h) for h in range(10)]
INSTANTS = [T0 + timedelta(minutes=30 * k) for k in range(-2, 24)]
TEXTS = {"en": Statement("headline")}

Scenario = tuple[Scheme, AreaTree, list[Declaration]]


@st.composite
def forests(draw: st.DrawFn) -> AreaTree:
    n = draw(st.integers(1, 12))
    codes = draw(st.permutations([f"a{i}" for i in range(n)]))
    areas = []
    for i, code in enumerate(codes):
        parent = draw(st.none() | st.sampled_from(codes[:i])) if i else None
        areas.append(Area(code, AreaKind.CUSTOM, {"en": code}, parent=parent))
    return AreaTree.build(draw(st.permutations(areas)))


@st.composite
def declarations(
    draw: st.DrawFn, scheme: Scheme, codes: list[str], did: str, earlier: list[str],
    *, plain: bool = False,
) -> Declaration:
    """One declaration; `plain`: published, replacing nothing."""
    effective = draw(st.sampled_from(GRID))
    expires = draw(st.none() | st.integers(1, 6).map(lambda h: effective + timedelta(hours=h)))
    draft = not plain and draw(st.integers(0, 5)) == 0
    cancel_at = draw(st.none() | st.sampled_from(GRID)) if draft or not plain else None
    replaces = () if plain or not earlier else tuple(
        draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True)))
    return Declaration(
        id=did,
        scheme=scheme.key,
        level=draw(st.sampled_from([lv.key for lv in scheme.levels])),
        areas=tuple(draw(st.lists(st.sampled_from(codes), min_size=1, max_size=4, unique=True))),
        texts=TEXTS,
        sender="authority",
        effective=None if draft and draw(st.booleans()) else effective,
        expires=expires,
        replaces=replaces,
        status=Status.DRAFT if draft else Status.PUBLISHED,
        created_at=T0 - timedelta(days=1),
        created_by="x",
        published_at=None if draft else T0 - timedelta(hours=1),
        published_by=None if draft else "x",
        cancellation=None if cancel_at is None else Cancellation(at=cancel_at, reason="r", by="x"),
    )


@st.composite
def scenarios(draw: st.DrawFn, schemes: tuple[Scheme, ...] = (KZ, METEO)) -> Scenario:
    scheme = draw(st.sampled_from(schemes))
    tree = draw(forests())
    codes = sorted(tree.areas)
    decls: list[Declaration] = []
    for i in range(draw(st.integers(0, 15))):
        decls.append(draw(declarations(scheme, codes, f"d{i}", [d.id for d in decls])))
    return scheme, tree, decls


# --- the oracle: the rule, read literally --------------------------------------------------


def oracle_end(d: Declaration, decls: list[Declaration]) -> datetime | None:
    ends = [r.effective for r in decls
            if r.status == Status.PUBLISHED and d.id in r.replaces and r.effective is not None]
    if d.expires is not None:
        ends.append(d.expires)
    if d.cancellation is not None:
        ends.append(d.cancellation.at)
    return min(ends, default=None)


def oracle_holds(d: Declaration, decls: list[Declaration], at: datetime) -> bool:
    if d.status != Status.PUBLISHED or d.effective is None or d.effective > at:
        return False
    end = oracle_end(d, decls)
    return end is None or at < end


def chain_of(tree: AreaTree, code: str) -> list[str]:
    out: list[str] = []
    current: str | None = code
    while current is not None:
        out.append(current)
        current = tree.areas[current].parent
    return out


def rank_of(scheme: Scheme, key: str | None) -> int:
    return next((lv.rank for lv in scheme.levels if lv.key == key), 0)


def oracle(
    scheme: Scheme, tree: AreaTree, decls: list[Declaration], code: str, at: datetime
) -> tuple[str | None, set[tuple[str, str]], bool]:
    """(level key, {(declaration id, via)}, is_baseline) for `code` at `at`."""
    chain = chain_of(tree, code)
    holding = [(d, via) for d in decls if oracle_holds(d, decls, at)
               for via in chain if via in d.areas]
    if not holding:
        return (scheme.baseline or None), set(), bool(scheme.baseline)
    top = max(rank_of(scheme, d.level) for d, _ in holding)
    key = next(lv.key for lv in scheme.levels if lv.rank == top)
    return key, {(d.id, via) for d, via in holding if rank_of(scheme, d.level) == top}, False


def key_of(e: Effective) -> str | None:
    return e.level.key if e.level is not None else None


def sources_of(e: Effective) -> set[tuple[str, str]]:
    return {(s.declaration.id, s.via) for s in e.sources}


def boundaries(decls: list[Declaration]) -> set[datetime]:
    out: set[datetime] = set()
    for d in decls:
        if d.status == Status.PUBLISHED and d.effective is not None:
            out.add(d.effective)
            end = oracle_end(d, decls)
            if end is not None:
                out.add(end)
    return out


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_effective_levels_agree_with_oracle(scenario: Scenario) -> None:
    scheme, tree, decls = scenario
    history = SchemeHistory(scheme, decls)
    by_id = {d.id: d for d in decls}
    for w in history.windows:
        assert (w.start, w.end) == (w.declaration.effective, oracle_end(by_id[w.declaration.id],
                                                                        decls))
    for at in INSTANTS:
        got = effective_levels(tree, history, at)
        assert set(got) == set(tree.areas)
        for code, e in got.items():
            key, sources, baseline = oracle(scheme, tree, decls, code, at)
            assert (key_of(e), sources_of(e), e.is_baseline) == (key, sources, baseline), (
                code, at)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_single_area_agrees_with_all_areas(scenario: Scenario) -> None:
    scheme, tree, decls = scenario
    history = SchemeHistory(scheme, decls)
    for at in INSTANTS:
        everyone = effective_levels(tree, history, at)
        for code in tree.areas:
            one = effective_level(tree, history, code, at)
            assert one.area == code
            assert key_of(one) == key_of(everyone[code])
            assert sources_of(one) == sources_of(everyone[code])
            assert one.inherited_from == everyone[code].inherited_from


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_adding_a_declaration_never_lowers_a_rank(data: st.DataObject) -> None:
    scheme, tree, decls = data.draw(scenarios())
    extra = data.draw(declarations(scheme, sorted(tree.areas), "extra", [], plain=True))
    before = SchemeHistory(scheme, decls)
    after = SchemeHistory(scheme, [*decls, extra])
    for at in INSTANTS:
        old, new = effective_levels(tree, before, at), effective_levels(tree, after, at)
        for code in tree.areas:
            assert rank_of(scheme, key_of(new[code])) >= rank_of(scheme, key_of(old[code]))
        if oracle_holds(extra, [*decls, extra], at):
            raised = {c for named in extra.areas for c in [named, *tree.descendants(named)]}
            for code in raised:
                assert rank_of(scheme, key_of(new[code])) >= rank_of(scheme, extra.level)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_descendants_rank_at_least_parent_and_sources_are_sound(scenario: Scenario) -> None:
    scheme, tree, decls = scenario
    history = SchemeHistory(scheme, decls)
    for at in INSTANTS:
        got = effective_levels(tree, history, at)
        for code, e in got.items():
            rank = rank_of(scheme, key_of(e))
            parent = tree.areas[code].parent
            if parent is not None:
                assert rank >= rank_of(scheme, key_of(got[parent]))
            chain = chain_of(tree, code)
            for s in e.sources:
                assert s.via in chain
                assert s.via in s.declaration.areas
                assert oracle_holds(s.declaration, decls, at)
                assert s.window.rank == rank == rank_of(scheme, s.declaration.level)
            own = any(s.via == code for s in e.sources)
            assert (e.inherited_from is None) == (own or not e.sources)
            if e.inherited_from is not None:
                assert e.inherited_from in chain[1:]


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_timeline_is_contiguous_and_matches_effective_levels(scenario: Scenario) -> None:
    scheme, tree, decls = scenario
    history = SchemeHistory(scheme, decls)
    for code in tree.areas:
        periods = timeline(tree, history, code)
        assert periods
        assert periods[0].start is None
        assert periods[-1].end is None
        for a, b in pairwise(periods):
            assert a.end is not None
            assert a.end == b.start
            assert a.start is None or a.start < a.end
            assert a.level != b.level
        for at in INSTANTS:
            expected = oracle(scheme, tree, decls, code, at)[0]
            got = period_at(periods, at).level
            assert (got.key if got is not None else None) == expected, (code, at)


@settings(max_examples=200, deadline=None)
@given(scenarios(schemes=(METEO,)))
def test_baseline_applies_where_nothing_holds(scenario: Scenario) -> None:
    scheme, tree, decls = scenario
    history = SchemeHistory(scheme, decls)
    for at in INSTANTS:
        for code, e in effective_levels(tree, history, at).items():
            if not any(oracle_holds(d, decls, at) and set(d.areas) & set(chain_of(tree, code))
                       for d in decls):
                assert key_of(e) == "green"
                assert e.is_baseline
                assert not e.sources
                assert e.inherited_from is None
            else:
                assert not e.is_baseline
                assert e.sources


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_next_change_after_is_the_next_boundary(scenario: Scenario) -> None:
    scheme, _, decls = scenario
    history = SchemeHistory(scheme, decls)
    points = boundaries(decls)
    for at in [*INSTANTS, *points]:
        later = sorted(p for p in points if p > at)
        got = history.next_change_after(at)
        if not later:
            assert got is None
            continue
        assert got is not None
        assert got > at
        assert not any(at < p < got for p in points)
        assert got == later[0]


def test_replacement_ends_the_replaced_declaration() -> None:
    """A fixed example of the rule, so a broken generator cannot hide everything."""
    tree = AreaTree.build([Area("KZ", AreaKind.COUNTRY, {"en": "KZ"}),
                           Area("KZ-75", AreaKind.CITY, {"en": "Almaty"}, parent="KZ")])
    base = Declaration("d0", KZ.key, "high", ("KZ",), TEXTS, "s", GRID[1], None, (),
                       Status.PUBLISHED, T0, "x", T0, "x")
    lower = replace(base, id="d1", level="moderate", effective=GRID[3], replaces=("d0",))
    history = SchemeHistory(KZ, [base, lower])
    assert key_of(effective_level(tree, history, "KZ-75", GRID[0])) is None
    city = effective_level(tree, history, "KZ-75", GRID[2])
    assert key_of(city) == "high"
    assert city.inherited_from == "KZ"
    assert key_of(effective_level(tree, history, "KZ-75", GRID[3])) == "moderate"
    assert history.next_change_after(GRID[1]) == GRID[3]


def oracle_windows(decls: list[Declaration]) -> list[tuple[Declaration, datetime, datetime | None]]:
    """(declaration, start, end) of every published declaration, in (start, id) order."""
    out = [(d, d.effective, oracle_end(d, decls)) for d in decls
           if d.status == Status.PUBLISHED and d.effective is not None]
    return sorted(out, key=lambda w: (w[1], w[0].id))


@st.composite
def instants(draw: st.DrawFn, decls: list[Declaration]) -> list[datetime]:
    """Instants in any order: window boundaries, a moment either side of them, and anywhere
    from before every declaration to after all of them; some in another time zone. The first
    (which settles what the index keeps ready) is near a boundary."""
    points = sorted(boundaries(decls)) or [T0]
    near = st.tuples(st.sampled_from(points), st.sampled_from([-1, 0, 0, 1])).map(
        lambda p: p[0] + timedelta(microseconds=p[1]))
    anywhere = st.integers(-24 * 60, 24 * 60).map(lambda m: T0 + timedelta(minutes=m))
    out = [draw(near), *draw(st.lists(near | anywhere, max_size=12))]
    east = timezone(timedelta(hours=6))
    return [at.astimezone(east) if draw(st.booleans()) else at for at in out]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_index_answers_like_a_scan_of_every_window_at_any_instant(
        data: st.DataObject) -> None:
    """Whatever instant is asked first (which settles what the index keeps ready), every
    question at every instant, past or future, gets the answer a scan of every window gives."""
    scheme, tree, decls = data.draw(scenarios())
    history = SchemeHistory(scheme, decls)
    windows = oracle_windows(decls)
    points = sorted(boundaries(decls))
    codes = sorted(tree.areas)
    for at in data.draw(instants(decls)):
        holding = [d.id for d, start, end in windows if start <= at and (end is None or at < end)]
        assert [w.declaration.id for w in history.in_effect(at)] == holding, at
        assert [w.declaration.id for w in history.ending_after(at)] == [
            d.id for d, _, end in windows if end is None or end > at]
        assert history.next_change_after(at) == min((p for p in points if p > at), default=None)
        assert history.last_change_until(at) == max((p for p in points if p <= at), default=None)
        code = data.draw(st.sampled_from(codes))
        chain = chain_of(tree, code)
        assert [w.declaration.id for w in history.naming_at(chain, at)] == [
            i for i in holding if set(chain) & set(next(d for d in decls if d.id == i).areas)]
        everyone = effective_levels(tree, history, at)
        for area in codes:
            expected = oracle(scheme, tree, decls, area, at)
            e = everyone[area]
            assert (key_of(e), sources_of(e), e.is_baseline) == expected, (area, at)
        one = effective_level(tree, history, code, at)
        assert (key_of(one), sources_of(one), one.is_baseline) == oracle(
            scheme, tree, decls, code, at)
    assert len(history) == len(windows)
    assert [(w.declaration.id, w.start, w.end) for w in history.windows] == [
        (d.id, start, end) for d, start, end in windows]
    for code in codes:
        chain = chain_of(tree, code)
        assert [w.declaration.id for w in history.naming(chain)] == [
            d.id for d, _, _ in windows if set(chain) & set(d.areas)]


def test_an_earlier_instant_after_a_later_one_sees_what_held_then() -> None:
    """The first instant asked settles what the index keeps ready; a replaced declaration
    still holds at an earlier instant asked afterwards."""
    base = Declaration("d0", KZ.key, "high", ("KZ",), TEXTS, "s", GRID[1], None, (),
                       Status.PUBLISHED, T0, "x", T0, "x")
    lower = replace(base, id="d1", level="moderate", effective=GRID[3], replaces=("d0",))
    history = SchemeHistory(KZ, [base, lower])
    assert [w.declaration.id for w in history.in_effect(GRID[5])] == ["d1"]
    assert [w.declaration.id for w in history.in_effect(GRID[2])] == ["d0"]
    assert history.last_change_until(GRID[2]) == GRID[1]
    assert history.next_change_after(GRID[2]) == GRID[3]
    assert history.last_change_until(GRID[5]) == GRID[3]
