"""Property: a history made from the previous one and the declarations a change touched
(`with_changes`) answers every question exactly as a history built from everything."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.test_resolve_properties import INSTANTS, Scenario, scenarios

from tocsin.domain.declaration import Declaration, Status
from tocsin.domain.layered import LayeredHistory, with_changes
from tocsin.domain.resolve import SchemeHistory, Window


def shape(windows: list[Window]) -> list[tuple[str, int, datetime, datetime | None]]:
    return [(w.declaration.id, w.rank, w.start, w.end) for w in windows]


@settings(max_examples=400, deadline=None)
@given(scenarios(), st.data())
def test_a_history_after_changes_answers_as_one_built_from_everything(
        scenario: Scenario, data: st.DataObject) -> None:
    scheme, tree, decls = scenario
    final = {d.id: d for d in decls}
    replaced = {old for d in decls if d.status is Status.PUBLISHED for old in d.replaces}
    # What the change published: declarations nothing replaces yet; what it cancelled.
    latest = [d.id for d in decls if d.id not in replaced and d.status is Status.PUBLISHED]
    new = set(data.draw(st.lists(st.sampled_from(latest), unique=True)) if latest else [])
    cancelled = {d.id for d in decls if d.cancellation is not None and d.id not in new}
    undone = set(data.draw(st.lists(st.sampled_from(sorted(cancelled)), unique=True))
                 if cancelled else [])
    before = {k: (replace(d, cancellation=None) if k in undone else d)
              for k, d in final.items() if k not in new}
    base = SchemeHistory(scheme, before.values())
    base.in_effect(INSTANTS[len(INSTANTS) // 2])  # the base answered before, as a snapshot
    replacers: dict[str, list[str]] = {}
    for d in decls:
        if d.status is Status.PUBLISHED:
            for old in d.replaces:
                replacers.setdefault(old, []).append(d.id)
    changed: list[Declaration] = [final[k] for k in sorted(new | undone)]
    layered = with_changes(base, changed, final, replacers)
    again = with_changes(layered, [], final, replacers)  # nothing more: the same answers
    whole = SchemeHistory(scheme, decls)
    codes = sorted(tree.areas)
    for history in (layered, again):
        assert shape(list(history.windows)) == shape(list(whole.windows))
        for at in INSTANTS:
            assert shape(history.in_effect(at)) == shape(whole.in_effect(at))
            assert shape(history.ending_after(at)) == shape(whole.ending_after(at))
            assert shape(history.naming_at(codes[:2], at)) == shape(
                whole.naming_at(codes[:2], at))
        assert shape(history.naming(codes)) == shape(whole.naming(codes))
    assert isinstance(layered, LayeredHistory) or not changed
