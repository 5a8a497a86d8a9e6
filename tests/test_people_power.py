"""Issue 15, item 11: what an administrator cannot do alone, through the API and the console
over a socket, on both databases. Nobody obtains a credential that acts as someone else (a
password reset is a one-time link the user follows herself), nobody widens their own powers,
an approval names the revision it read, a preview does not show another's draft, and a
re-enabled user's old tokens stay revoked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine, update
from tests.helpers import assert_error, dump, request
from tests.test_authority_http import (
    OPERATOR,
    PASSWORD,
    Site,
    body,
    csrf_in,
    form,
    serve,
)

from tocsin.domain.access import Role, Scope
from tocsin.domain.declaration import DeclarationRequest
from tocsin.service import authority, people, queries
from tocsin.store import tables

NEW_PASSWORD = "a passphrase she chose herself"


@pytest.fixture
def site(engine: Engine) -> Iterator[Site]:
    with serve(engine) as fresh:
        yield fresh


def actions(site: Site, count: int) -> list[tuple[str, str, str]]:
    return [(e.action, e.subject, e.actor) for e in queries.audit_tail(site.engine, count)]


def signs_in(site: Site, name: str, password: str) -> int:
    browser = site.browser()
    page = browser.get("/console/login")
    return browser.post("/console/login", data={
        "csrf": csrf_in(page.text), "name": name, "password": password,
        "next": "/console"}).status_code


# --- passwords: a one-time link, never one an administrator chose ---------------------------


def test_an_admin_cannot_set_another_users_password_through_the_api(site: Site) -> None:
    before = site.quiet("admin")
    refused = site.call("admin", "PATCH", "/users/issuer-almaty", {"password": NEW_PASSWORD})
    assert_error(refused, 403, "may not choose a password for issuer-almaty")
    assert dump(site.engine) == before
    assert signs_in(site, "issuer-almaty", NEW_PASSWORD) == 401


def test_an_admin_cannot_set_another_users_password_in_the_console(site: Site) -> None:
    admin = site.sign_in("admin")
    before = dump(site.engine)
    refused = admin.send_form("/console/users/issuer-almaty", {
        "roles": "issuer", "areas": "KZ-75", "password": NEW_PASSWORD})
    assert refused.status_code == 403 and "reset link" in refused.text
    assert dump(site.engine) == before
    assert 'name="password"' not in admin.get("/console/users").text.split("Add a user")[0]


def test_a_reset_link_from_the_api_lets_the_user_choose_her_password_once(site: Site) -> None:
    issued = site.call("admin", "POST", "/users/issuer-almaty/password-reset")
    assert issued.status_code == 201, issued.text
    made = issued.json()
    assert made["user"] == "issuer-almaty" and made["token"].startswith("reset_")
    expires = datetime.fromisoformat(made["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=23) < expires <= timedelta(hours=24)
    assert parse_qs(urlsplit(made["link"]).query)["token"] == [made["token"]]
    assert PASSWORD not in issued.text and NEW_PASSWORD not in issued.text
    # nothing changed yet: her password still holds, and only the hash of the token is kept
    assert signs_in(site, "issuer-almaty", PASSWORD) == 303
    assert made["token"] not in repr(dump(site.engine))

    short = site.api.post("/api/v1/authority/password-reset",
                          json={"token": made["token"], "password": "short"})
    assert_error(short, 400, "password has 5 characters")  # and the link still works
    done = site.api.post("/api/v1/authority/password-reset",
                         json={"token": made["token"], "password": NEW_PASSWORD})
    assert done.status_code == 200 and done.json()["name"] == "issuer-almaty"
    assert signs_in(site, "issuer-almaty", NEW_PASSWORD) == 303
    assert signs_in(site, "issuer-almaty", PASSWORD) == 401
    assert actions(site, 2) == [
        ("user.password_reset_issued", "issuer-almaty", "user:admin"),
        ("user.password_reset", "issuer-almaty", "user:issuer-almaty")]

    before = dump(site.engine)
    again = site.api.post("/api/v1/authority/password-reset",
                          json={"token": made["token"], "password": "yet another passphrase"})
    assert_error(again, 401, "was used already or has expired")
    assert dump(site.engine) == before


def test_a_reset_link_expires_and_a_newer_one_replaces_it(site: Site) -> None:
    first = site.call("admin", "POST", "/users/issuer-kz/password-reset").json()["token"]
    second = site.call("admin", "POST", "/users/issuer-kz/password-reset").json()["token"]
    assert_error(site.api.post("/api/v1/authority/password-reset", json={
        "token": first, "password": NEW_PASSWORD}), 401, "not valid")
    with site.engine.begin() as conn:  # a day passes
        conn.execute(update(tables.password_resets).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert_error(site.api.post("/api/v1/authority/password-reset", json={
        "token": second, "password": NEW_PASSWORD}), 401, "has expired")
    assert signs_in(site, "issuer-kz", PASSWORD) == 303


def test_only_an_admin_issues_reset_links(site: Site) -> None:
    before = site.quiet("issuer-kz", "admin")
    assert_error(site.call("issuer-kz", "POST", "/users/issuer-almaty/password-reset"), 403)
    assert_error(site.call("nobody", "POST", "/users/issuer-almaty/password-reset"), 401)
    assert_error(site.call("admin", "POST", "/users/nobody/password-reset"), 404)
    assert dump(site.engine) == before


def test_a_reset_link_from_the_console_is_followed_in_the_console(site: Site) -> None:
    admin = site.sign_in("admin")
    shown = admin.send_form("/console/users/approver-almaty/reset")
    assert shown.status_code == 200, shown.text
    link = re.findall(r'<code class="secret">([^<]+)</code>', shown.text)[0].replace("&amp;", "&")
    assert "/console/reset?token=reset_" in link
    assert re.findall(r"secret", admin.get("/console/users").text) == []  # shown once

    user = site.browser()
    page = user.get(urlsplit(link).path + "?" + urlsplit(link).query)
    assert page.status_code == 200 and 'name="password_again"' in page.text
    fields = {"csrf": csrf_in(page.text),
              "token": re.findall(r'name="token" value="([^"]+)"', page.text)[0]}
    differ = user.post("/console/reset", data={**fields, "password": NEW_PASSWORD,
                                               "password_again": NEW_PASSWORD + "!"})
    assert differ.status_code == 400 and "the two passwords differ" in differ.text
    done = user.post("/console/reset", data={**fields, "password": NEW_PASSWORD,
                                             "password_again": NEW_PASSWORD})
    assert (done.status_code, done.headers["location"]) == (303, "/console/login")
    assert signs_in(site, "approver-almaty", NEW_PASSWORD) == 303
    twice = user.post("/console/reset", data={**fields, "password": PASSWORD,
                                              "password_again": PASSWORD})
    assert twice.status_code == 401 and "used already" in twice.text
    assert signs_in(site, "approver-almaty", PASSWORD) == 401


def test_a_reset_ends_the_users_sessions_and_lifts_a_lockout(site: Site) -> None:
    console = site.sign_in("issuer-kz")
    for _ in range(6):
        signs_in(site, "issuer-kz", "wrong password, many times")
    token = site.call("admin", "POST", "/users/issuer-kz/password-reset").json()["token"]
    assert site.api.post("/api/v1/authority/password-reset", json={
        "token": token, "password": NEW_PASSWORD}).status_code == 200
    assert console.get("/console").status_code == 303  # signed out
    assert signs_in(site, "issuer-kz", NEW_PASSWORD) == 303


# --- one's own powers: another admin must change them ----------------------------------------


@pytest.mark.parametrize("change", [
    {"roles": ["admin", "issuer", "approver"], "areas": ["KZ"]},
    {"break_glass": True},
    {"areas": ["KZ"]},
])
def test_an_admin_cannot_widen_her_own_powers(site: Site, change: dict[str, object]) -> None:
    people.add_user(site.engine, "admin-2", PASSWORD, [Role.ADMIN], [], break_glass=False,
                    now=datetime.now(UTC), by=None, actor=OPERATOR)
    before = site.quiet("admin")
    assert_error(site.call("admin", "PATCH", "/users/admin", change), 403,
                 "another admin must do this")
    assert dump(site.engine) == before
    console = site.sign_in("admin")
    refused = console.send_form("/console/users/admin", {
        "roles": ["admin", "issuer"], "areas": "KZ", "break_glass": "on"})
    assert refused.status_code == 403 and "another admin must do this" in refused.text
    # another admin may, and it is audited with who did it
    token = people.create_token(site.engine, "admin-2", [Scope.ADMIN], label="t",
                                now=datetime.now(UTC), by=None, actor=OPERATOR).secret
    site.tokens["admin-2"] = token
    done = site.call("admin-2", "PATCH", "/users/admin",
                     {"roles": ["admin", "issuer"], "areas": ["KZ"], "break_glass": True})
    assert done.status_code == 200 and done.json()["break_glass"] is True
    assert actions(site, 1) == [("user.updated", "admin", "user:admin-2")]


def test_an_admin_still_changes_her_own_address_and_others_roles(site: Site) -> None:
    assert site.call("admin", "PATCH", "/users/admin",
                     {"email": "admin@example.kz"}).status_code == 200
    assert site.call("admin", "PATCH", "/users/admin",
                     {"roles": ["admin"], "areas": []}).status_code == 200  # no change
    assert site.call("admin", "PATCH", "/users/issuer-kz",
                     {"break_glass": True}).status_code == 200


# --- approvals name the revision they read ---------------------------------------------------


def test_an_approval_without_the_revision_read_is_refused_naming_it(site: Site) -> None:
    pending = site.refs["pending-75"]
    assert site.call("issuer-almaty", "PUT", f"/declarations/{pending}",
                     body("critical", "KZ-75")).status_code == 200  # revision 2 now
    before = site.quiet("approver-kz")
    refused = site.call("approver-kz", "POST", f"/declarations/{pending}/approve")
    assert_error(refused, 400, "revision")
    assert dump(site.engine) == before and site.state("pending-75") == "pending"
    console = site.sign_in("approver-kz")
    assert console.send_form(f"/console/declarations/{pending}/approve").status_code == 400
    assert site.state("pending-75") == "pending"
    assert site.call("approver-kz", "POST", f"/declarations/{pending}/approve",
                     {"revision": 2}).status_code == 200


# --- the preview does not show another's draft -----------------------------------------------


def test_a_preview_replacing_anothers_draft_answers_as_if_it_did_not_exist(site: Site) -> None:
    secret = "Secret plan for Almaty not yet submitted"
    author = people.get_user(site.engine, "issuer-almaty").principal()
    draft = authority.create(site.engine, author, _request(secret), now=datetime.now(UTC),
                             submit=False).declaration.id
    console = site.sign_in("issuer-kz")

    def preview(replaces: str) -> str:
        shown = console.send_form("/console/declare", form("moderate", "KZ-75", step="preview",
                                                           replaces=replaces))
        assert shown.status_code == 200, shown.text
        return re.sub(r"\d", "0", shown.text.replace(replaces, "ID"))  # times differ

    assert secret not in preview(draft)
    assert preview(draft) == preview("20991231-0badc0de")
    own = site.sign_in("issuer-almaty").send_form("/console/declare", form(
        "moderate", "KZ-75", step="preview", replaces=draft))
    assert own.status_code == 200 and secret in own.text  # her own draft, she may see


def _request(headline: str) -> DeclarationRequest:
    return request("moderate", ("KZ-75",), headline=headline)


# --- a disabled user's tokens stay revoked ---------------------------------------------------


@pytest.mark.parametrize("door", ["api", "console"])
def test_re_enabling_a_user_does_not_bring_her_old_tokens_back(site: Site, door: str) -> None:
    assert site.call("issuer-kz", "GET", "/me").status_code == 200
    if door == "api":
        assert site.call("admin", "PATCH", "/users/issuer-kz",
                         {"disabled": True}).status_code == 200
        assert site.call("admin", "PATCH", "/users/issuer-kz",
                         {"disabled": False}).status_code == 200
    else:
        admin = site.sign_in("admin")
        fields = {"roles": "issuer", "areas": "KZ"}
        assert admin.send_form("/console/users/issuer-kz",
                               {**fields, "disabled": "on"}).status_code == 303
        assert admin.send_form("/console/users/issuer-kz", fields).status_code == 303
    assert_error(site.call("issuer-kz", "GET", "/me"), 401, "the bearer token was revoked at ")
    listed = site.call("admin", "GET", "/tokens").json()["tokens"]
    assert [t["state"] for t in listed if t["user"] == "issuer-kz"] == ["revoked"]
    disabled = [e for e in queries.audit_tail(site.engine, 3) if e.action == "user.updated"]
    assert disabled[0].details["tokens_revoked"] == [site.refs["token:issuer-kz"]]
    # a token she makes after coming back works
    fresh = people.create_token(site.engine, "issuer-kz", [Scope.DECLARE], label="new",
                                now=datetime.now(UTC), by=None, actor=OPERATOR)
    site.tokens["fresh"] = fresh.secret
    assert site.call("fresh", "GET", "/me").status_code == 200
