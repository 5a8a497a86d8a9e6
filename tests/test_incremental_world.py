"""Property: a world made from the previous one by `evolved` (the history layered, the levels
resolved again only where the change named areas) answers as a world read from scratch."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.test_resolve_properties import INSTANTS, Scenario, scenarios

from tocsin.domain.declaration import Status
from tocsin.service.queries import World


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.data())
def test_an_evolved_world_resolves_as_a_fresh_one(scenario: Scenario,
                                                  data: st.DataObject) -> None:
    scheme, tree, decls = scenario
    final = {d.id: d for d in decls}
    replaced = {old for d in decls if d.status is Status.PUBLISHED for old in d.replaces}
    latest = [d.id for d in decls if d.id not in replaced and d.status is Status.PUBLISHED]
    new = set(data.draw(st.lists(st.sampled_from(latest), unique=True)) if latest else [])
    cancelled = sorted(d.id for d in decls if d.cancellation is not None and d.id not in new)
    undone = set(data.draw(st.lists(st.sampled_from(cancelled), unique=True))
                 if cancelled else [])
    before = {k: (replace(d, cancellation=None) if k in undone else d)
              for k, d in final.items() if k not in new}
    at = data.draw(st.sampled_from(INSTANTS))
    old = World(tree, {scheme.key: scheme}, before, now=at)
    for code in tree.areas:  # the old world answered: its caches are warm
        old.effective(scheme.key, code, at)
        old.periods_around(scheme.key, code, at)
    evolved = old.evolved({k: final[k] for k in new | undone}, at)
    fresh = World(tree, {scheme.key: scheme}, final, now=at)
    for code in tree.areas:
        one, two = evolved.effective(scheme.key, code, at), fresh.effective(scheme.key, code, at)
        assert (one.level, [s.declaration.id for s in one.sources]) == (
            two.level, [s.declaration.id for s in two.sources]), code
        assert evolved.periods_around(scheme.key, code, at) == fresh.periods_around(
            scheme.key, code, at), code
        assert evolved.beneath(scheme.key, code) == fresh.beneath(scheme.key, code), code
