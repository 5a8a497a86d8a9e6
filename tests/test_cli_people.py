"""`tocsin users …` and `tocsin tokens …` through the CLI runner: people and JSON output, the
secret shown once, tokens that authenticate until revoked, and refusals that write nothing."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine
from tests.helpers import dump
from typer.testing import CliRunner

from tocsin.cli.main import app
from tocsin.domain.access import Role, Scope
from tocsin.domain.errors import Unauthenticated
from tocsin.service import people

runner = CliRunner()
PASSWORD = "correct horse battery staple"


def cli(url: str, *args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input,
                         env={"TOCSIN_DATABASE_URL": url, "COLUMNS": "200"})


def ok_json(url: str, *args: str, input: str | None = None) -> Any:
    result = cli(url, *args, "--json", input=input)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def flat(text: str) -> str:
    return " ".join(text.split())


def add_alice(url: str) -> Any:
    return ok_json(url, "users", "add", "alice", "--role", "issuer", "--area", "KZ-75",
                   "--password-stdin", input=PASSWORD + "\n")


def test_users_add_list_set_and_disable(db_url: str, engine: Engine) -> None:
    alice = add_alice(db_url)
    assert alice["roles"] == ["issuer"] and alice["jurisdiction"] == ["KZ-75"]
    assert not alice["break_glass"] and not alice["disabled"]
    table = cli(db_url, "users", "add", "bob", "--role", "admin", "--role", "auditor",
                "--break-glass", "--password-stdin", input=PASSWORD + "\n")
    assert table.exit_code == 0, table.output
    assert "added user bob" in table.stdout and "admin, auditor" in table.stdout
    listed = {u["name"]: u for u in ok_json(db_url, "users", "list")}
    assert sorted(listed) == ["alice", "bob"] and listed["bob"]["break_glass"]
    human = cli(db_url, "users", "list")
    assert human.exit_code == 0 and "2 users" in human.stdout
    for column in ("name", "roles", "jurisdiction", "break-glass", "disabled", "locked until"):
        assert column in human.stdout

    changed = ok_json(db_url, "users", "set", "alice", "--role", "approver", "--role", "issuer",
                      "--area", "KZ-11", "--area", "KZ-19", "--break-glass")
    assert changed["roles"] == ["approver", "issuer"]
    assert changed["jurisdiction"] == ["KZ-11", "KZ-19"] and changed["break_glass"]
    disabled = ok_json(db_url, "users", "set", "alice", "--disable")
    assert disabled["disabled"] and disabled["roles"] == ["approver", "issuer"]
    assert disabled["jurisdiction"] == ["KZ-11", "KZ-19"] and disabled["break_glass"]
    enabled = ok_json(db_url, "users", "set", "alice", "--enable", "--no-break-glass")
    assert not enabled["disabled"] and not enabled["break_glass"]
    [stored] = [u for u in people.list_users(engine, by=None) if u.name == "alice"]
    assert stored.roles == {Role.APPROVER, Role.ISSUER} and not stored.disabled


def test_users_set_password_from_stdin_and_prompt(db_url: str, engine: Engine) -> None:
    add_alice(db_url)
    now = datetime.now(UTC)
    assert people.login(engine, "alice", PASSWORD, now=now).user.name == "alice"
    ok_json(db_url, "users", "set", "alice", "--password-stdin", input="a new long passphrase\n")
    with pytest.raises(Unauthenticated):
        people.login(engine, "alice", PASSWORD, now=now)
    people.login(engine, "alice", "a new long passphrase", now=now)
    prompted = cli(db_url, "users", "set", "alice", "--password",
                   input="another passphrase\nanother passphrase\n")
    assert prompted.exit_code == 0, prompted.output
    assert "changed user alice (new password)" in prompted.stdout
    assert "another passphrase" not in prompted.output
    people.login(engine, "alice", "another passphrase", now=now)


def test_users_add_asks_for_the_password_twice(db_url: str, engine: Engine) -> None:
    mismatch = f"{PASSWORD}\n{PASSWORD}!\n{PASSWORD}\n{PASSWORD}\n"
    result = cli(db_url, "users", "add", "carol", "--role", "auditor", input=mismatch)
    assert result.exit_code == 0, result.output
    assert result.output.count("Repeat for confirmation") == 2
    assert PASSWORD not in result.output
    assert people.login(engine, "carol", PASSWORD, now=datetime.now(UTC)).user.name == "carol"
    before = dump(engine)
    short = cli(db_url, "users", "add", "dave", "--role", "auditor", input="short\n")
    assert short.exit_code == 2 and "password has 5 characters" in flat(short.stderr)
    assert "Repeat for confirmation" not in short.output
    assert dump(engine) == before


def test_tokens_create_shows_the_secret_once_then_list_and_revoke(db_url: str) -> None:
    add_alice(db_url)
    made = cli(db_url, "tokens", "create", "--user", "alice", "--scope", "declare",
               "--label", "ci pipeline", "--expires", "PT12H")
    assert made.exit_code == 0, made.output
    [secret] = [line.removeprefix("secret: ") for line in made.stdout.splitlines()
                if line.startswith("secret: ")]
    assert secret.startswith(people.TOKEN_PREFIX)
    assert made.stdout.count(secret) == 1
    assert "will not be shown again" in flat(made.stdout)
    token_id = secret.removeprefix(people.TOKEN_PREFIX).partition("_")[0]
    hashed = hashlib.sha256(secret.partition(f"{token_id}_")[2].encode()).hexdigest()

    [listed] = ok_json(db_url, "tokens", "list")
    assert listed["id"] == token_id and listed["user"] == "alice"
    assert listed["label"] == "ci pipeline" and listed["scopes"] == ["declare"]
    assert listed["state"] == "active" and listed["last_used_at"] is None
    created = datetime.fromisoformat(listed["created_at"])
    expires = datetime.fromisoformat(listed["expires_at"])
    assert (expires - created).total_seconds() == 12 * 3600
    table = cli(db_url, "tokens", "list", "--user", "alice")
    assert table.exit_code == 0 and "active" in table.stdout and token_id in table.stdout
    for output in (table.stdout, json.dumps(listed)):
        assert secret.partition(f"{token_id}_")[2] not in output and hashed not in output

    revoked = cli(db_url, "tokens", "revoke", token_id)
    assert revoked.exit_code == 0 and f"revoked token {token_id}" in revoked.stdout
    [after] = ok_json(db_url, "tokens", "list", "--user", "alice")
    assert after["state"] == "revoked" and after["revoked_at"] is not None
    assert "revoked" in cli(db_url, "tokens", "list").stdout
    again = cli(db_url, "tokens", "revoke", token_id)
    assert again.exit_code == 2 and "was already revoked" in again.stderr


def test_token_json_carries_the_secret_once(db_url: str) -> None:
    add_alice(db_url)
    made = ok_json(db_url, "tokens", "create", "--user", "alice", "--scope", "declare")
    assert made["secret"].startswith(f"{people.TOKEN_PREFIX}{made['id']}_")
    assert made["state"] == "active" and made["label"] == "token"
    lifetime = (datetime.fromisoformat(made["expires_at"])
                - datetime.fromisoformat(made["created_at"]))
    assert lifetime == people.DEFAULT_TOKEN_LIFETIME
    assert "secret" not in ok_json(db_url, "tokens", "list")[0]


def test_created_token_authenticates_until_revoked(db_url: str, engine: Engine) -> None:
    add_alice(db_url)
    made = ok_json(db_url, "tokens", "create", "--user", "alice", "--scope", "declare")
    principal = people.authenticate_token(engine, made["secret"], now=datetime.now(UTC))
    assert principal.name == "alice" and principal.scopes == {Scope.DECLARE}
    assert principal.has(Scope.DECLARE) and not principal.has(Scope.ADMIN)
    [used] = ok_json(db_url, "tokens", "list")
    assert used["last_used_at"] is not None

    ok_json(db_url, "tokens", "revoke", made["id"])
    with pytest.raises(Unauthenticated, match="was revoked"):
        people.authenticate_token(engine, made["secret"], now=datetime.now(UTC))


def test_disabling_a_user_revokes_her_tokens_for_good(db_url: str, engine: Engine) -> None:
    """Enabling her again must not bring old credentials back (issue 15, item 11)."""
    add_alice(db_url)
    made = ok_json(db_url, "tokens", "create", "--user", "alice", "--scope", "declare")
    ok_json(db_url, "users", "set", "alice", "--disable")
    with pytest.raises(Unauthenticated, match="was revoked"):
        people.authenticate_token(engine, made["secret"], now=datetime.now(UTC))
    ok_json(db_url, "users", "set", "alice", "--enable")
    with pytest.raises(Unauthenticated, match="was revoked"):
        people.authenticate_token(engine, made["secret"], now=datetime.now(UTC))
    assert [t["state"] for t in ok_json(db_url, "tokens", "list")] == ["revoked"]
    fresh = ok_json(db_url, "tokens", "create", "--user", "alice", "--scope", "declare")
    assert people.authenticate_token(engine, fresh["secret"], now=datetime.now(UTC)).name == "alice"


BAD_INPUTS = [
    (["users", "add", "carol", "--password-stdin"], "--role is missing"),
    (["users", "add", "carol", "--role", "boss", "--password-stdin"],
     "role 'boss' is not known (use one of admin, issuer, approver, auditor, subscriber)"),
    (["users", "add", "carol", "--role", "issuer", "--password-stdin"],
     "role issuer needs a jurisdiction (give the areas the user acts for"),
    (["users", "add", "carol", "--role", "approver", "--area", "KZ-99", "--password-stdin"],
     "area 'KZ-99' is not known"),
    (["users", "add", "carol", "--role", "approver", "--area", "kz-75", "--password-stdin"],
     "did you mean 'KZ-75'"),
    (["users", "add", "Carol!", "--role", "admin", "--password-stdin"],
     "user name 'Carol!' is not allowed"),
    (["users", "add", "alice", "--role", "admin", "--password-stdin"],
     "user 'alice' already exists"),
    (["users", "add", "carol", "--role", "admin", "--password-stdin", "<short"],
     "password has 5 characters (use at least 12"),
    (["users", "add", "carol", "--role", "admin", "--password-stdin", "<"],
     "password has 0 characters"),
    (["users", "set", "nobody", "--disable"], "user 'nobody' is not known"),
    (["users", "set", "alicia", "--disable"], "did you mean 'alice'?"),
    (["users", "set", "nobody", "--password"], "user 'nobody' is not known"),
    (["users", "set", "alice", "--role", "approver", "--role", "root"], "role 'root' is not known"),
    (["users", "set", "alice", "--role", "auditor", "--role", "approver", "--area", "KZ-99"],
     "area 'KZ-99' is not known"),
    (["users", "set", "alice", "--password-stdin", "<short"], "password has 5 characters"),
    (["users", "set", "alice"], "nothing to change for user 'alice'"),
    (["users", "set", "alice", "--password", "--password-stdin"], "exclude each other"),
    (["tokens", "create", "--user", "nobody", "--scope", "declare"],
     "user 'nobody' is not known (try 'tocsin users list')"),
    (["tokens", "create", "--user", "alice", "--scope", "root"],
     "scope 'root' is not known (use one of read-audit, declare, approve, admin, subscribe)"),
    (["tokens", "create", "--user", "alice"], "no scope given"),
    (["tokens", "create", "--user", "alice", "--scope", "admin"],
     "user 'alice' cannot hold a token with scope admin"),
    (["tokens", "create", "--user", "alice", "--scope", "declare", "--expires", "90d"],
     "--expires '90d' is not an ISO 8601 duration (write weeks, days, hours or minutes"),
    (["tokens", "create", "--user", "alice", "--scope", "declare", "--expires", "P0D"],
     "--expires 'P0D' is zero"),
    (["tokens", "create", "--user", "alice", "--scope", "declare", "--expires", "P400D"],
     "token lifetime must be between 1 second and 366 days"),
    (["tokens", "list", "--user", "nobody"], "user 'nobody' is not known"),
    (["tokens", "revoke", "nope"], "token 'nope' is not known"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_exits_2_names_the_problem_and_writes_nothing(
    db_url: str, engine: Engine, args: list[str], message: str
) -> None:
    add_alice(db_url)
    ok_json(db_url, "tokens", "create", "--user", "alice", "--scope", "declare")
    users, tokens = ok_json(db_url, "users", "list"), ok_json(db_url, "tokens", "list")
    before = dump(engine)
    stdin = [arg for arg in args if arg.startswith("<")]
    line = stdin[0].removeprefix("<") + "\n" if stdin else PASSWORD + "\n"
    result = cli(db_url, *[arg for arg in args if not arg.startswith("<")], input=line)
    assert result.exit_code == 2, result.output
    assert message in flat(result.stderr)
    assert "Password" not in result.stdout
    assert ok_json(db_url, "users", "list") == users
    assert ok_json(db_url, "tokens", "list") == tokens
    assert dump(engine) == before
