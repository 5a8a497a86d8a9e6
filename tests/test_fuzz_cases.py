"""The kept fuzz cases (tests/fuzz_cases/TARGET/*.bin) fed to their targets as `make fuzz`
feeds them: each must be answered by the door's own refusal or accepted, within a second.
Hostile inputs written by hand (empty, NUL bytes, lone surrogates, huge numbers, deep
nesting) sit beside the crashes and hangs that the fuzz found and that were fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fuzz_targets import CASES, HANG_SECONDS, TARGETS, cases, feed

KEPT = [(name, path) for name in TARGETS for path in cases(name)]


def test_every_target_keeps_cases_and_every_case_folder_is_a_target() -> None:
    assert {name for name, _ in KEPT} == set(TARGETS)
    assert {folder.name for folder in CASES.iterdir() if folder.is_dir()} <= set(TARGETS)


@pytest.mark.parametrize(("target", "case"), KEPT,
                         ids=[f"{name}/{path.name}" for name, path in KEPT])
def test_a_kept_fuzz_case_neither_crashes_nor_hangs(target: str, case: Path) -> None:
    data = case.read_bytes()
    outcome = feed(TARGETS[target], data)
    assert outcome.crash is None, outcome.trace
    if outcome.hang:  # the first input of a target also pays for its set-up: try again
        outcome = feed(TARGETS[target], data)
    assert outcome.seconds < HANG_SECONDS, f"took {outcome.seconds:.2f} s"
