"""The authority workflow at the service layer, on both databases: who may draft, submit,
edit, approve, reject and cancel which declarations; break-glass; tokens and sign-in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine
from tests.helpers import AUTHORITY_PASSWORD, AUTHORITY_USERS, dump, request, utc

from tocsin.domain.access import FREE_FAILURES, Principal, Scope, lockout
from tocsin.domain.declaration import CancelRequest, Declaration, Status
from tocsin.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from tocsin.ingest.schemes import builtin_scheme_files, load_scheme_file, parse_scheme
from tocsin.service import authority, commands, people, queries

NOW = utc(2022, 1, 7, 3, 0)
HOUR = timedelta(hours=1)
OPERATOR = "local-operator:test"
PASSWORD = AUTHORITY_PASSWORD
USERS = AUTHORITY_USERS
WORLD: dict[str, tuple[str, str, tuple[str, ...], bool]] = {
    # name: (author, level, areas, submit) -- what the matrix tests start from
    "draft-75": ("issuer-almaty", "moderate", ("KZ-75",), False),
    "draft-high-75": ("issuer-almaty", "high", ("KZ-75",), False),
    "pending-75": ("issuer-almaty", "high", ("KZ-75",), True),
    "pending-kz": ("issuer-kz", "high", ("KZ",), True),
    "pending-both": ("both", "critical", ("KZ-75",), True),
    "pending-breaker": ("breaker", "critical", ("KZ",), True),
    "rejected-75": ("issuer-almaty", "high", ("KZ-75",), True),  # then rejected
    "live-75": ("issuer-almaty", "moderate", ("KZ-75",), True),
    "live-kz": ("issuer-kz", "moderate", ("KZ",), True),
}
Expected = Status | type[Exception]
Who = dict[str, Principal]
Ids = dict[str, str]


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about policy: argon2's production cost would only slow them down."""
    monkeypatch.setattr(people, "_hasher", PasswordHasher(time_cost=1, memory_cost=64,
                                                          parallelism=1))


@pytest.fixture
def who(engine: Engine) -> Who:
    return {name: people.add_user(engine, name, PASSWORD, roles, areas, break_glass=glass,
                                  now=NOW, by=None, actor=OPERATOR).principal()
            for name, (roles, areas, glass) in USERS.items()}


@pytest.fixture
def ids(engine: Engine, who: Who) -> Ids:
    made = {name: authority.create(engine, who[author], request(level, areas), now=NOW,
                                   submit=submit).declaration.id
            for name, (author, level, areas, submit) in WORLD.items()}
    authority.reject(engine, who["approver-kz"], made["rejected-75"], reason="unclear", now=NOW)
    return made


def attempt(engine: Engine, expected: object, act: Callable[[], Any]) -> Any:
    """Run `act`; when `expected` is an error class, `act` must raise it and leave every table
    as it was (None); else return what `act` returns."""
    if not (isinstance(expected, type) and issubclass(expected, Exception)):
        return act()
    before = dump(engine)
    with pytest.raises(expected):
        act()
    assert dump(engine) == before
    return None


def decide(engine: Engine, principal: Principal, declaration_id: str, decision: str) -> Any:
    """'approve', or 'reject: <reason>'."""
    if decision == "approve":
        return authority.approve(engine, principal, declaration_id, now=NOW)
    return authority.reject(engine, principal, declaration_id,
                            reason=decision.removeprefix("reject:"), now=NOW)


def in_force(engine: Engine, who: Who, author: str, level: str, areas: tuple[str, ...],
             scheme: str = "kz-terror") -> Declaration:
    """A published declaration; approver-kz approves it when its level needs that."""
    made = authority.create(engine, who[author], request(level, areas, scheme=scheme), now=NOW,
                            submit=True).declaration
    if made.status is Status.PENDING:
        return authority.approve(engine, who["approver-kz"], made.id, now=NOW)
    return made


def stored(engine: Engine, declaration_id: str) -> Declaration:
    return queries.load_world(engine).declarations[declaration_id]


def actions(engine: Engine, count: int) -> list[tuple[str, str]]:
    return [(e.action, e.subject) for e in queries.audit_tail(engine, count)]


@pytest.mark.parametrize(("name", "level", "area", "submit", "expected"), [
    ("issuer-almaty", "high", "KZ-75", True, Status.PENDING),
    ("issuer-almaty", "critical", "KZ-75", True, Status.PENDING),
    ("issuer-almaty", "moderate", "KZ-75", True, Status.PUBLISHED),
    ("issuer-almaty", "critical", "KZ-75", False, Status.DRAFT),
    ("issuer-almaty", "high", "KZ", True, Forbidden),  # the country is outside Almaty city
    ("issuer-almaty", "moderate", "KZ-19", False, Forbidden),  # so is Almaty region
    ("issuer-kz", "high", "KZ-75", True, Status.PENDING),  # a region inside the country
    ("issuer-kz", "moderate", "KZ-19", True, Status.PUBLISHED),
    ("breaker", "critical", "KZ", True, Status.PENDING),  # break-glass only when asked for
    ("both", "high", "KZ", True, Status.PENDING),
    ("approver-kz", "moderate", "KZ", False, Forbidden),
    ("approver-almaty", "moderate", "KZ-75", True, Forbidden),
    ("auditor", "moderate", "KZ", False, Forbidden),
    ("admin", "moderate", "KZ", True, Forbidden),
])
def test_who_may_draft_and_submit_what(engine: Engine, who: Who, name: str, level: str,
                                       area: str, submit: bool, expected: Expected) -> None:
    outcome = attempt(engine, expected, lambda: authority.create(
        engine, who[name], request(level, (area,)), now=NOW, submit=submit))
    if outcome is not None:
        d = outcome.declaration
        assert (d.status, outcome.needs_approval) == (expected, expected is Status.PENDING)
        assert (d.created_by, stored(engine, d.id).status) == (f"user:{name}", expected)
        assert d.published_by == (f"user:{name}" if expected is Status.PUBLISHED else None)


@pytest.mark.parametrize(("name", "target", "glass", "expected"), [
    ("issuer-almaty", "draft-75", None, Status.PUBLISHED),
    ("issuer-almaty", "draft-high-75", None, Status.PENDING),
    ("issuer-kz", "draft-75", None, NotFound),  # someone else's draft is invisible
    ("approver-almaty", "draft-75", None, NotFound),
    ("issuer-almaty", "pending-75", None, Conflict),  # already waits for an approver
    ("issuer-almaty", "live-75", None, Forbidden),
    ("issuer-almaty", "rejected-75", None, Forbidden),
    ("breaker", "pending-breaker", "now", Status.PUBLISHED),  # break-glass frees own work
    ("issuer-almaty", "pending-75", "now", Forbidden),  # without the right
])
def test_only_the_author_submits_a_draft(engine: Engine, who: Who, ids: Ids, name: str,
                                         target: str, glass: str | None,
                                         expected: Expected) -> None:
    outcome = attempt(engine, expected, lambda: authority.submit(
        engine, who[name], ids[target], now=NOW, break_glass=glass))
    if outcome is not None:
        d = outcome.declaration
        assert (d.status, outcome.needs_approval) == (expected, expected is Status.PENDING)
        assert (stored(engine, d.id).status, d.break_glass) == (expected, glass)


@pytest.mark.parametrize(("name", "target", "area", "expected"), [
    ("issuer-almaty", "pending-75", "KZ-75", Status.PENDING),
    ("issuer-almaty", "draft-75", "KZ-75", Status.DRAFT),
    ("issuer-almaty", "pending-75", "KZ", Forbidden),  # moved outside the jurisdiction
    ("issuer-kz", "pending-75", "KZ-75", NotFound),  # not the author, not a decider
    ("approver-almaty", "pending-75", "KZ-75", Forbidden),  # sees it, but not the author
    ("issuer-almaty", "live-75", "KZ-75", Forbidden),
    ("issuer-almaty", "rejected-75", "KZ-75", Forbidden),
])
def test_only_the_author_edits_unpublished_work(engine: Engine, who: Who, ids: Ids, name: str,
                                                target: str, area: str,
                                                expected: Expected) -> None:
    changed = attempt(engine, expected, lambda: authority.edit(
        engine, who[name], ids[target], request("high", (area,), headline="Revised"), now=NOW))
    if changed is not None:
        assert (changed.status, changed.revision, changed.level) == (expected, 2, "high")
        assert stored(engine, ids[target]).texts["en"].headline == "Revised"


@pytest.mark.parametrize("decision", ["approve", "reject: too vague "])
@pytest.mark.parametrize(("name", "target", "expected"), [
    ("approver-almaty", "pending-75", Status.PUBLISHED),
    ("approver-kz", "pending-75", Status.PUBLISHED),
    ("approver-kz", "pending-kz", Status.PUBLISHED),
    ("both", "pending-75", Status.PUBLISHED),
    ("approver-kz", "pending-both", Status.PUBLISHED),
    ("approver-almaty", "pending-kz", NotFound),  # country-wide: not theirs to see
    ("both", "pending-both", Forbidden),  # two-person rule: not one's own
    ("issuer-kz", "pending-75", NotFound),
    ("breaker", "pending-75", NotFound),
    ("auditor", "pending-75", NotFound),
    ("admin", "pending-75", NotFound),
    ("approver-kz", "draft-75", NotFound),  # drafts are their author's alone
    ("approver-kz", "live-75", Conflict),
    ("approver-kz", "rejected-75", Conflict),
])
def test_who_may_decide_on_pending_work(engine: Engine, who: Who, ids: Ids, decision: str,
                                        name: str, target: str, expected: Expected) -> None:
    if decision != "approve" and expected is Status.PUBLISHED:
        expected = Status.REJECTED
    decided = attempt(engine, expected, lambda: decide(engine, who[name], ids[target], decision))
    if decided is not None:
        again = stored(engine, decided.id)
        assert decided.status is again.status is expected
        assert decided.created_by == again.created_by == f"user:{WORLD[target][0]}"
        if expected is Status.PUBLISHED:
            assert (again.published_by, again.rejection) == (f"user:{name}", None)
        else:
            assert again.rejection is not None and again.published_by is None
            assert (again.rejection.reason, again.rejection.by) == ("too vague", f"user:{name}")


@pytest.mark.parametrize("decision", ["reject:", "reject:   "])
def test_a_rejection_must_say_why(engine: Engine, who: Who, ids: Ids, decision: str) -> None:
    attempt(engine, InvalidInput, lambda: decide(engine, who["approver-kz"], ids["pending-75"],
                                                 decision))


def test_an_approval_names_the_revision_it_read(engine: Engine, who: Who, ids: Ids) -> None:
    read = stored(engine, ids["pending-75"])
    changed = authority.edit(engine, who["issuer-almaty"], read.id,
                             request("critical", ("KZ-75",), headline="Revised"), now=NOW)
    assert (changed.status, changed.revision) == (Status.PENDING, read.revision + 1)
    attempt(engine, Conflict, lambda: authority.approve(
        engine, who["approver-almaty"], read.id, now=NOW, revision=read.revision))
    done = authority.approve(engine, who["approver-almaty"], read.id, now=NOW,
                             revision=changed.revision)
    assert (done.status, done.level, done.texts["en"].headline) == (
        Status.PUBLISHED, "critical", "Revised")
    assert (done.created_by, done.published_by) == ("user:issuer-almaty", "user:approver-almaty")
    assert actions(engine, 2) == [("declaration.approved", read.id),
                                  ("declaration.published", read.id)]


@pytest.mark.parametrize(("name", "target", "reason", "expected"), [
    ("issuer-almaty", "live-75", "over", Status.PUBLISHED),
    ("issuer-kz", "live-75", "over", Status.PUBLISHED),  # not theirs, but inside their areas
    ("breaker", "live-kz", "over", Status.PUBLISHED),
    ("issuer-almaty", "live-kz", "over", Forbidden),
    ("approver-kz", "live-75", "over", Forbidden),
    ("auditor", "live-75", "over", Forbidden),
    ("admin", "live-kz", "over", Forbidden),
    ("issuer-almaty", "pending-75", "over", Conflict),  # only published levels end early
    ("issuer-almaty", "draft-75", "over", Conflict),
    ("issuer-almaty", "live-75", "  ", InvalidInput),
])
def test_who_may_cancel_what(engine: Engine, who: Who, ids: Ids, name: str, target: str,
                             reason: str, expected: Expected) -> None:
    outcome = attempt(engine, expected, lambda: authority.cancel(
        engine, who[name], ids[target], reason=reason, now=NOW))
    if outcome is not None:
        assert not outcome.needs_approval
        cancellation = stored(engine, ids[target]).cancellation
        assert cancellation is not None
        assert (cancellation.by, cancellation.reason) == (f"user:{name}", reason)


@pytest.mark.parametrize(("name", "level", "reason", "expected"), [
    ("breaker", "critical", " bomb threat at the airport ", Status.PUBLISHED),
    ("breaker", "moderate", "drill", Status.PUBLISHED),  # needed no approval anyway
    ("issuer-kz", "critical", "bomb threat", Forbidden),  # lacks the right
    ("approver-kz", "critical", "bomb threat", Forbidden),
    ("breaker", "critical", "  ", InvalidInput),
])
def test_break_glass_publishes_alone_with_a_reason(engine: Engine, who: Who, name: str,
                                                   level: str, reason: str,
                                                   expected: Expected) -> None:
    outcome = attempt(engine, expected, lambda: authority.create(
        engine, who[name], request(level, ("KZ",)), now=NOW, submit=True, break_glass=reason))
    if outcome is not None:
        d = outcome.declaration
        assert (d.status, outcome.needs_approval, d.published_by) == (
            Status.PUBLISHED, False, "user:breaker")
        assert d.break_glass == stored(engine, d.id).break_glass == reason.strip()
        glass, published = queries.audit_tail(engine, 2)
        assert (glass.action, glass.subject, glass.details) == (
            "declaration.break-glass", d.id,
            {"reason": reason.strip(), "approval_needed": level == "critical"})
        assert (published.action, published.subject) == ("declaration.published", d.id)
        assert published.details["break_glass"] == reason.strip()


@pytest.mark.parametrize(("name", "level", "areas", "expected"), [
    ("issuer-kz", "moderate", ("KZ",), Status.PUBLISHED),
    ("issuer-kz", "high", ("KZ",), Status.PUBLISHED),  # lower, though still 'high' or above
    ("issuer-kz", "critical", ("KZ",), Status.PENDING),  # the same level: not a lowering
    ("issuer-almaty", "moderate", ("KZ-75",), Forbidden),  # takes over all of KZ
])
def test_lowering_a_published_level_needs_no_second_person(
        engine: Engine, who: Who, name: str, level: str, areas: tuple[str, ...],
        expected: Expected) -> None:
    critical, later = in_force(engine, who, "issuer-kz", "critical", ("KZ",)), NOW + HOUR
    outcome = attempt(engine, expected, lambda: authority.create(
        engine, who[name], request(level, areas, replaces=(critical.id,)), now=later,
        submit=True))
    if outcome is not None:
        assert (outcome.declaration.status, outcome.needs_approval) == (
            expected, expected is Status.PENDING)
        [status] = queries.load_world(engine, published_only=True).status(
            later, area="KZ-19", scheme="kz-terror")
        assert status.effective.level is not None
        assert status.effective.level.key == (level if expected is Status.PUBLISHED
                                              else "critical")


def test_a_lowering_that_adds_areas_still_needs_a_second_person(engine: Engine,
                                                                who: Who) -> None:
    critical = in_force(engine, who, "issuer-almaty", "critical", ("KZ-75",))
    outcome = authority.create(engine, who["issuer-kz"], request(
        "high", ("KZ",), replaces=(critical.id,)), now=NOW + HOUR, submit=True)
    assert outcome.needs_approval  # KZ-19 had no level: 'high' there is a raise


def test_an_approver_needs_the_areas_a_declaration_takes_over(engine: Engine, who: Who,
                                                              ids: Ids) -> None:
    pending = authority.create(engine, who["issuer-kz"], request(
        "high", ("KZ-75",), replaces=(ids["live-kz"],)), now=NOW, submit=True).declaration
    # approving it ends the country-wide level: not for an approver of Almaty city alone,
    # who does not even see it among the work waiting for them
    attempt(engine, NotFound, lambda: authority.approve(
        engine, who["approver-almaty"], pending.id, now=NOW))


def import_kz_test(engine: Engine) -> None:
    """kz-terror under the key kz-test, where cancelling a 'high' or above needs approval."""
    path = next(p for p in builtin_scheme_files() if p.name == "kz-terror.toml")
    _, document = load_scheme_file(path)
    document = {**document, "scheme": {**document["scheme"], "key": "kz-test"},
                "approval": {**document["approval"], "cancelling": True}}
    assert commands.import_scheme(engine, parse_scheme(document, "kz-test"), document,
                                  now=NOW, actor=OPERATOR) == "created"


@pytest.mark.parametrize(("name", "level", "glass", "expected"), [
    ("issuer-kz", "moderate", None, False),  # below 'high': ends at once
    ("issuer-kz", "high", None, True),
    ("breaker", "high", "bridge collapsed", False),  # break-glass needs no second person
    ("issuer-kz", "high", "no right to it", Forbidden),
])
def test_when_a_cancellation_waits_for_a_second_person(engine: Engine, who: Who, name: str,
                                                       level: str, glass: str | None,
                                                       expected: bool | type[Exception]) -> None:
    import_kz_test(engine)
    live = in_force(engine, who, "issuer-kz", level, ("KZ",), scheme="kz-test")
    outcome = attempt(engine, expected, lambda: authority.cancel(
        engine, who[name], live.id, reason="over", now=NOW, break_glass=glass))
    if outcome is not None:
        after = stored(engine, live.id)
        assert outcome.needs_approval is expected is (after.cancellation is None)
        assert after.cancel_request == (CancelRequest(NOW, "over", f"user:{name}") if expected
                                        else None)
        assert (actions(engine, 2)[0] == ("declaration.break-glass", live.id)) is bool(glass)


@pytest.mark.parametrize(("decider", "decision", "expected"), [
    ("approver-almaty", "approve", "cancelled"),
    ("approver-kz", "reject: not yet", "in force"),
    ("both", "approve", Forbidden),  # asked for the cancellation: cannot decide on it
    ("both", "reject: not yet", Forbidden),
    ("approver-kz", "reject: ", InvalidInput),
    ("issuer-almaty", "approve", Forbidden),
])
def test_a_second_person_decides_on_a_cancellation(engine: Engine, who: Who, decider: str,
                                                   decision: str, expected: object) -> None:
    import_kz_test(engine)
    live = in_force(engine, who, "issuer-almaty", "high", ("KZ-75",), scheme="kz-test")
    asked = authority.cancel(engine, who["both"], live.id, reason=" all clear ", now=NOW)
    assert asked.needs_approval and stored(engine, live.id).cancel_request is not None
    attempt(engine, Conflict, lambda: authority.cancel(
        engine, who["issuer-kz"], live.id, reason="again", now=NOW))
    assert [d.id for d in authority.desk(engine, who["approver-almaty"], now=NOW).to_decide] == [
        live.id]
    assert authority.desk(engine, who["both"], now=NOW).to_decide == []
    if attempt(engine, expected, lambda: decide(engine, who[decider], live.id, decision)) is None:
        return
    after = stored(engine, live.id)
    assert after.cancel_request is None
    if expected == "cancelled":
        assert after.cancellation is not None
        assert (after.cancellation.by, after.cancellation.reason) == (
            f"user:{decider}", "all clear")
        assert actions(engine, 2) == [("cancellation.approved", live.id),
                                      ("declaration.cancelled", live.id)]
    else:
        assert after.cancellation is None
        assert actions(engine, 1) == [("cancellation.rejected", live.id)]


@pytest.mark.parametrize(("name", "target", "expected"), [
    ("issuer-almaty", "draft-75", Status.DRAFT),  # own work
    ("issuer-kz", "draft-75", NotFound),  # someone else's unpublished work
    ("issuer-kz", "pending-75", NotFound),
    ("approver-almaty", "pending-75", Status.PENDING),  # waits for them
    ("approver-almaty", "pending-kz", NotFound),  # outside their areas
    ("auditor", "live-kz", Status.PUBLISHED),  # published: anyone signed in
])
def test_who_sees_which_declaration_on_the_console(engine: Engine, who: Who, ids: Ids,
                                                   name: str, target: str,
                                                   expected: Expected) -> None:
    found = attempt(engine, expected, lambda: authority.get(engine, who[name], ids[target]))
    assert found is None or (found.id, found.status) == (ids[target], expected)


@pytest.mark.parametrize(("scopes", "action", "expected"), [
    ({Scope.DECLARE}, "approve", NotFound),  # the token may not approve: nor see the work
    ({Scope.DECLARE}, "declare", Status.PUBLISHED),
    ({Scope.APPROVE}, "declare", Forbidden),
    ({Scope.APPROVE}, "approve", Status.PUBLISHED),
    ({Scope.DECLARE, Scope.APPROVE}, "approve", Status.PUBLISHED),
])
def test_a_token_acts_with_its_scopes_only(engine: Engine, ids: Ids, scopes: set[Scope],
                                           action: str, expected: Expected) -> None:
    new = people.create_token(engine, "both", sorted(scopes), label="ci", now=NOW, by=None,
                              actor=OPERATOR)
    principal = people.authenticate_token(engine, new.secret, now=NOW)
    assert (principal.name, principal.scopes, principal.rights) == ("both", scopes, scopes)
    if action == "approve":
        attempt(engine, expected, lambda: authority.approve(
            engine, principal, ids["pending-75"], now=NOW))
    else:
        attempt(engine, expected, lambda: authority.create(
            engine, principal, request("moderate", ("KZ-19",)), now=NOW, submit=True))


@pytest.mark.parametrize(("user", "scopes", "expected"), [
    ("issuer-almaty", [Scope.APPROVE], Forbidden),
    ("auditor", [Scope.DECLARE], Forbidden),
    ("approver-kz", [Scope.ADMIN], Forbidden),
    ("admin", [Scope.DECLARE], Forbidden),
    ("issuer-kz", [], InvalidInput),
    ("admin", [Scope.ADMIN, Scope.READ_AUDIT], None),
    ("auditor", [Scope.READ_AUDIT], None),
    ("both", [Scope.DECLARE, Scope.APPROVE], None),
])
def test_a_token_never_holds_more_than_its_users_roles(
        engine: Engine, who: Who, user: str, scopes: list[Scope],
        expected: type[Exception] | None) -> None:
    new = attempt(engine, expected, lambda: people.create_token(
        engine, user, scopes, label="t", now=NOW, by=None, actor=OPERATOR))
    if new is not None:
        assert people.authenticate_token(engine, new.secret, now=NOW).scopes == set(scopes)


@pytest.mark.parametrize(("how", "message"), [
    ("expired", "was expired"),
    ("revoked", "was revoked"),
    ("malformed", "malformed"),
    ("no prefix", "malformed"),
    ("wrong secret", "not valid"),
    ("unknown id", "not valid"),
    ("disabled user", "was revoked"),  # disabling revokes her tokens for good
])
def test_a_token_that_does_not_hold_is_refused(engine: Engine, who: Who, how: str,
                                               message: str) -> None:
    new = people.create_token(engine, "issuer-kz", [Scope.DECLARE], label="ci", lifetime=HOUR,
                              now=NOW, by=None, actor=OPERATOR)
    assert people.authenticate_token(engine, new.secret, now=NOW).name == "issuer-kz"
    token_id, bearer, at = new.token.id, new.secret, NOW + HOUR - timedelta(seconds=1)
    if how == "expired":
        at = NOW + HOUR
    elif how == "revoked":
        people.revoke_token(engine, token_id, now=NOW, by=who["issuer-kz"], actor=OPERATOR)
    elif how == "malformed":
        bearer = f"tocsin_{token_id}"
    elif how == "no prefix":
        bearer = new.secret.removeprefix("tocsin_")
    elif how == "wrong secret":
        bearer = f"tocsin_{token_id}_{'x' * 43}"
    elif how == "unknown id":
        bearer = new.secret.replace(token_id, "0" * len(token_id))
    else:
        people.set_user(engine, "issuer-kz", disabled=True, now=NOW, by=who["admin"],
                        actor="user:admin")
    with pytest.raises(Unauthenticated, match=message):
        people.authenticate_token(engine, bearer, now=at)


def test_a_session_opens_with_the_password_and_ends_on_logout(engine: Engine, who: Who) -> None:
    opened = people.login(engine, " issuer-kz ", PASSWORD, now=NOW)
    assert opened.user.name == "issuer-kz" and opened.csrf and opened.token
    found = people.session(engine, opened.token, now=NOW + HOUR)
    assert found is not None and (found.user.name, found.csrf) == ("issuer-kz", opened.csrf)
    assert people.session(engine, opened.token, now=NOW + people.SESSION_LIFETIME) is None
    assert people.session(engine, "not a session", now=NOW) is None
    people.logout(engine, opened.token)
    assert people.session(engine, opened.token, now=NOW) is None


@pytest.mark.parametrize(("failures", "pause"), [
    (0, None), (FREE_FAILURES - 1, None), (FREE_FAILURES, 30), (FREE_FAILURES + 1, 60),
    (FREE_FAILURES + 2, 120), (FREE_FAILURES + 7, 3600), (1000, 3600),
])
def test_lockout_starts_after_the_free_failures_and_doubles(failures: int,
                                                           pause: int | None) -> None:
    assert lockout(failures) == (timedelta(seconds=pause) if pause is not None else None)


def test_repeated_failures_lock_the_account_for_a_while(engine: Engine, who: Who) -> None:
    for _ in range(FREE_FAILURES):
        with pytest.raises(Unauthenticated, match="password is wrong"):
            people.login(engine, "issuer-kz", "not the password at all", now=NOW)
    assert actions(engine, 1) == [("user.locked", "issuer-kz")]
    pause = lockout(FREE_FAILURES)
    assert pause is not None
    waited = timedelta(seconds=10)
    with pytest.raises(RateLimited) as limited:  # even the right password
        people.login(engine, "issuer-kz", PASSWORD, now=NOW + waited)
    assert limited.value.retry_after == int((pause - waited).total_seconds()) + 1 >= 1
    opened = people.login(engine, "issuer-kz", PASSWORD, now=NOW + pause)
    assert opened.user.failed_logins == 0 and opened.user.locked_until is None
    user = people.get_user(engine, "issuer-kz")
    assert (user.failed_logins, user.locked_until) == (0, None)
    with pytest.raises(Unauthenticated):  # counting starts afresh: no lockout yet
        people.login(engine, "issuer-kz", "not the password at all", now=NOW + pause)
    assert people.login(engine, "issuer-kz", PASSWORD, now=NOW + pause).user.name == "issuer-kz"


@pytest.mark.parametrize(("name", "password", "problem"), [
    ("nobody", PASSWORD, people.WRONG.problem),  # the same answer as a wrong password
    ("issuer-kz", "not the password at all", people.WRONG.problem),
    ("auditor", "not the password at all", people.WRONG.problem),
    ("auditor", PASSWORD, "user 'auditor' is disabled"),
])
def test_unknown_and_disabled_users_cannot_sign_in(engine: Engine, who: Who, name: str,
                                                   password: str, problem: str) -> None:
    opened = people.login(engine, "auditor", PASSWORD, now=NOW)
    people.set_user(engine, "auditor", disabled=True, now=NOW, by=who["admin"],
                    actor="user:admin")
    assert people.session(engine, opened.token, now=NOW) is None
    with pytest.raises(Unauthenticated) as refused:
        people.login(engine, name, password, now=NOW)
    assert refused.value.problem == problem


def test_the_public_sees_published_declarations_only(engine: Engine, ids: Ids) -> None:
    everything = queries.load_world(engine).declarations
    assert {everything[i].status for i in ids.values()} == set(Status)
    public = queries.load_world(engine, published_only=True)
    assert set(public.declarations) == {ids["live-75"], ids["live-kz"]}
    [almaty] = public.status(NOW + HOUR, area="KZ-75", scheme="kz-terror")
    assert almaty.effective.level is not None and almaty.effective.level.key == "moderate"

