"""Property tests: the two-person rule's idea of a lowering agrees with a brute-force oracle.

A replacement counts as a lowering only where, at every instant of the new declaration's term
and in every one of its areas, a declaration it replaces held a higher level over that area.
The oracle checks that instant by instant on a grid that holds every boundary, the points
between them and one beyond them all (so an open-ended term is checked for ever after).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.domain.access import is_lowering, needs_approval
from tocsin.domain.area import Area, AreaKind, AreaTree
from tocsin.domain.declaration import Cancellation, Declaration, Statement, Status
from tocsin.domain.scheme import ApprovalRule
from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file

SCHEMES = {s.key: s for s in (load_scheme_file(p)[0] for p in builtin_scheme_files())}
SCHEME = SCHEMES["uk-terror"]  # five levels: room for lowerings that are still high
LEVELS = [level.key for level in SCHEME.levels]
T0 = datetime(2022, 1, 7, tzinfo=UTC)
HOURS = st.integers(0, 8).map(lambda h: T0 + timedelta(hours=h))
TREE = AreaTree.build([
    Area("c", AreaKind.COUNTRY, {"en": "c"}),
    Area("r1", AreaKind.REGION, {"en": "r1"}, parent="c"),
    Area("r2", AreaKind.REGION, {"en": "r2"}, parent="c"),
    Area("d1", AreaKind.DISTRICT, {"en": "d1"}, parent="r1"),
    Area("d2", AreaKind.DISTRICT, {"en": "d2"}, parent="r1"),
])
CODES = list(TREE.areas)


@st.composite
def replaced(draw: st.DrawFn, number: int) -> Declaration:
    """A published declaration with a term, perhaps open-ended, perhaps cancelled."""
    effective = draw(HOURS)
    expires = draw(st.none() | st.integers(1, 5).map(lambda h: effective + timedelta(hours=h)))
    cancelled = draw(st.none() | HOURS)
    return Declaration(
        id=f"old{number}", scheme=SCHEME.key, level=draw(st.sampled_from(LEVELS)),
        areas=tuple(draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=3,
                                  unique=True))),
        texts={"en": Statement("old")}, sender="test", effective=effective, expires=expires,
        replaces=(), status=Status.PUBLISHED, created_at=T0, created_by="user:a",
        published_at=T0, published_by="user:a",
        cancellation=Cancellation(cancelled, "over", "user:a") if cancelled else None)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Declaration, list[Declaration], datetime]:
    olds = [draw(replaced(n)) for n in range(draw(st.integers(0, 3)))]
    now = draw(HOURS)
    effective = draw(st.none() | HOURS)
    start = effective or now
    expires = draw(st.none() | st.integers(1, 6).map(lambda h: start + timedelta(hours=h)))
    new = Declaration(
        id="new", scheme=SCHEME.key, level=draw(st.sampled_from(LEVELS)),
        areas=tuple(draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=3,
                                  unique=True))),
        texts={"en": Statement("new")}, sender="test", effective=effective, expires=expires,
        replaces=tuple(d.id for d in olds), status=Status.DRAFT, created_at=now,
        created_by="user:b")
    return new, olds, now


def oracle(new: Declaration, olds: list[Declaration], now: datetime) -> bool:
    rank = SCHEME.level(new.level).rank
    start = new.effective or now
    end = new.expires
    if end is not None and end <= start:
        return False
    points = sorted({T0 + timedelta(minutes=30 * k) for k in range(-2, 40)} | {start})
    for at in points:
        if at < start or (end is not None and at >= end):
            continue
        for code in new.areas:
            chain = {code, *TREE.ancestors(code)}
            if not any(
                SCHEME.level(old.level).rank > rank and chain.intersection(old.areas)
                and old.effective is not None and old.effective <= at
                and (old.expires is None or at < old.expires)
                and (old.cancellation is None or at < old.cancellation.at)
                for old in olds
            ):
                return False
    return True


@settings(max_examples=1500, deadline=None)
@given(scenarios())
def test_a_lowering_is_exactly_what_the_oracle_says(
        scenario: tuple[Declaration, list[Declaration], datetime]) -> None:
    new, olds, now = scenario
    assert is_lowering(SCHEME, TREE, new, olds, now=now) is oracle(new, olds, now)


@settings(max_examples=500, deadline=None)
@given(scenarios(), st.sampled_from(LEVELS), st.booleans())
def test_only_a_true_lowering_skips_the_second_person(
        scenario: tuple[Declaration, list[Declaration], datetime], threshold: str,
        lowering_needs_one: bool) -> None:
    new, olds, now = scenario
    rule = ApprovalRule(from_level=threshold, lowering=lowering_needs_one)
    high = SCHEME.level(new.level).rank >= SCHEME.level(threshold).rank
    expected = high and (lowering_needs_one or not oracle(new, olds, now))
    assert needs_approval(SCHEME, rule, TREE, new, olds, now=now) is expected
