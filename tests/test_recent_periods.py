"""Property: the periods an area page shows (walked back from an instant only as far as
needed) are exactly the tail of the full timeline around that instant."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.test_resolve_properties import INSTANTS, Scenario, scenarios

from tocsin.domain.resolve import SchemeHistory, timeline
from tocsin.service.queries import World


@settings(max_examples=400, deadline=None)
@given(scenarios(), st.sampled_from(INSTANTS), st.integers(0, 4))
def test_recent_periods_are_the_timeline_around_the_instant(
        scenario: Scenario, at: object, before: int) -> None:
    scheme, tree, decls = scenario
    world = World(tree, {scheme.key: scheme}, {d.id: d for d in decls})
    history = SchemeHistory(scheme, decls)
    for code in tree.areas:
        full = timeline(tree, history, code)
        here = next(i for i, p in enumerate(full) if p.contains(at))  # type: ignore[arg-type]
        shown, cut = world.periods_around(scheme.key, code, at, before)  # type: ignore[arg-type]
        first = max(0, here - before)
        assert [(p.level, p.start, p.end) for p in shown] == [
            (p.level, p.start, p.end) for p in full[first:]], code
        assert cut is (first > 0)
