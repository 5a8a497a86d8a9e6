"""`tocsin users add|list|set` and `tocsin tokens create|list|revoke`, run as the local operator.

The local operator may do what an administrator may, so every call passes `by=None`.
Flags are checked (and the areas looked up) before any password is asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from tocsin.cli import context as ctx
from tocsin.domain.access import (
    Role,
    Scope,
    Token,
    User,
    check_roles,
    check_user_name,
    parse_roles,
    parse_scopes,
)
from tocsin.domain.errors import InvalidInput, unknown
from tocsin.domain.times import format_duration, iso, parse_duration
from tocsin.service import people, queries

users_app = typer.Typer(help="Users of the console and the API: add, list, change.",
                        no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens: create (the secret is shown once), list, revoke.",
                         no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Roles = Annotated[list[str] | None, typer.Option(
    "--role", help=f"Role, one of {', '.join(Role)}; repeat.")]
Areas = Annotated[list[str] | None, typer.Option(
    "--area", help="Area code the user issues or approves for (issuer and approver need one); "
    "repeat.")]
Email = Annotated[str | None, typer.Option(
    "--email", help="Where reminders go before the user's declarations end ('' removes it).")]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from one line of standard input.")]

EMPTY = "—"


# --- users -----------------------------------------------------------------------------------


@users_app.command("add")
def add(name: Annotated[str, typer.Argument(help="User name: lowercase letters, digits, . _ -")],
        role: Roles = None, area: Areas = None,
        break_glass: Annotated[bool, typer.Option(
            "--break-glass", help="May publish alone in an emergency, with a reason.")] = False,
        email: Email = None, password_stdin: PasswordStdin = False,
        json_out: Json = False) -> None:
    """Add a user; asks for the password twice unless --password-stdin."""
    with ctx.refusals():
        if not role:
            raise InvalidInput("--role is missing",
                               f"give at least one of {', '.join(Role)}, e.g. --role issuer")
        roles = parse_roles(role)
        check_user_name(name)
        check_roles(roles, area or [], queries.load_world(ctx.engine()).tree)
        password = _read_password(password_stdin)
        user = people.add_user(ctx.engine(), name, password, sorted(roles), area or [],
                               break_glass=break_glass, now=ctx.now(), by=None,
                               actor=ctx.actor(), email=email or None)
    if json_out:
        ctx.emit_json(_user_json(user))
        return
    ctx.console.print(_users_table([user], ctx.now(), f"added user {user.name}"))


@users_app.command("list")
def list_users(json_out: Json = False) -> None:
    """Every user with their roles, jurisdiction and state."""
    with ctx.refusals():
        users = people.list_users(ctx.engine(), by=None)
    if json_out:
        ctx.emit_json([_user_json(user) for user in users])
        return
    ctx.console.print(_users_table(users, ctx.now(), _count(len(users), "user")))


@users_app.command("set")
def set_(name: Annotated[str, typer.Argument(help="User name.")],
         role: Roles = None, area: Areas = None,
         break_glass: Annotated[bool | None, typer.Option(
             "--break-glass/--no-break-glass", help="Grant or withdraw the break-glass right.",
             show_default=False)] = None,
         disable: Annotated[bool | None, typer.Option(
             "--disable/--enable", help="Disable the user (ends their sessions; their tokens "
             "stop working) or enable them again.", show_default=False)] = None,
         email: Email = None, password_stdin: PasswordStdin = False,
         password: Annotated[bool, typer.Option(
             "--password", help="Ask for a new password (twice).")] = False,
         json_out: Json = False) -> None:
    """Change a user: only the options given change; --role and --area replace the list."""
    with ctx.refusals():
        if password and password_stdin:
            raise InvalidInput("--password and --password-stdin exclude each other",
                               "give one of them")
        if not (role or area or password or password_stdin) and (
                break_glass is None and disable is None and email is None):
            raise InvalidInput(f"nothing to change for user {name!r}",
                               "give --role, --area, --break-glass/--no-break-glass, "
                               "--disable/--enable, --email, --password or --password-stdin")
        roles = parse_roles(role) if role else None
        new_password = None
        if password:
            _existing_user(name)  # before asking for a password nobody will use
        if password or password_stdin:
            new_password = _read_password(password_stdin)
        user = people.set_user(ctx.engine(), name,
                               roles=sorted(roles) if roles is not None else None,
                               jurisdiction=area or None, break_glass=break_glass,
                               disabled=disable, password=new_password, now=ctx.now(),
                               by=None, actor=ctx.actor(), email=email)
    if json_out:
        ctx.emit_json(_user_json(user))
        return
    ctx.console.print(_users_table([user], ctx.now(), f"changed user {user.name}"
                                   + (" (new password)" if new_password is not None else "")))


def _read_password(from_stdin: bool) -> str:
    """One line of stdin, or a hidden prompt asked twice; refused if too short."""
    if from_stdin:
        return people.check_password(sys.stdin.readline().rstrip("\r\n"))
    entered: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True,
                                value_proc=people.check_password)
    return entered


def _existing_user(name: str) -> User:
    users = {user.name: user for user in people.list_users(ctx.engine(), by=None)}
    if name not in users:
        raise unknown("user", name, users, "try 'tocsin users list'")
    return users[name]


def _user_json(user: User) -> dict[str, Any]:
    return {"name": user.name, "roles": [role.value for role in sorted(user.roles)],
            "jurisdiction": list(user.jurisdiction), "break_glass": user.break_glass,
            "disabled": user.disabled, "created_at": iso(user.created_at),
            "failed_logins": user.failed_logins, "locked_until": _time(user.locked_until),
            "email": user.email}


def _users_table(users: Sequence[User], now: datetime, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("name", "roles", "jurisdiction", "break-glass", "disabled", "locked until"):
        table.add_column(column)
    for user in users:
        locked = user.locked_until if user.locked_until and user.locked_until > now else None
        table.add_row(user.name, ", ".join(sorted(user.roles)) or EMPTY,
                      ", ".join(user.jurisdiction) or EMPTY, _yes(user.break_glass),
                      _yes(user.disabled), _time(locked) or EMPTY)
    return table


# --- tokens ----------------------------------------------------------------------------------


@tokens_app.command("create")
def create(user: Annotated[str, typer.Option("--user", help="The user the token acts for.")],
           scope: Annotated[list[str] | None, typer.Option(
               "--scope", help=f"Scope, one of {', '.join(Scope)}; repeat. The user's roles "
               "must grant it.")] = None,
           label: Annotated[str, typer.Option(help="What the token is for.")] = "",
           expires: Annotated[str | None, typer.Option(
               help="Lifetime as an ISO 8601 duration, e.g. P90D, P2W or PT12H; default "
               f"{format_duration(people.DEFAULT_TOKEN_LIFETIME)}, at most "
               f"{format_duration(people.LONGEST_TOKEN_LIFETIME)}.")] = None,
           json_out: Json = False) -> None:
    """Make an API token; its secret is printed this once and never again."""
    with ctx.refusals():
        scopes = parse_scopes(scope or [])
        lifetime = (parse_duration(expires, "--expires") if expires is not None
                    else people.DEFAULT_TOKEN_LIFETIME)
        made = people.create_token(ctx.engine(), user, sorted(scopes), label=label,
                                   lifetime=lifetime, now=ctx.now(), by=None,
                                   actor=ctx.actor())
    if json_out:
        ctx.emit_json({**_token_json(made.token, ctx.now()), "secret": made.secret})
        return
    token = made.token
    ctx.console.print(f"created token {token.id} ({token.label}) for {token.user}, scopes "
                      f"{', '.join(sorted(token.scopes))}, expires {iso(token.expires_at)}")
    ctx.console.print(f"secret: {made.secret}")
    ctx.console.print("[bold]This secret is shown only now and will not be shown again: "
                      "store it safely.[/] Send it as 'Authorization: Bearer <secret>'.")


@tokens_app.command("list")
def list_tokens(user: Annotated[str | None, typer.Option(
                    "--user", help="Only this user's tokens.")] = None,
                json_out: Json = False) -> None:
    """Every token with its state; never the secrets."""
    with ctx.refusals():
        if user is not None:
            _existing_user(user)
        tokens = [token for token in people.list_tokens(ctx.engine(), by=None)
                  if user is None or token.user == user]
    now = ctx.now()
    if json_out:
        ctx.emit_json([_token_json(token, now) for token in tokens])
        return
    table = Table(title=_count(len(tokens), "token"), title_justify="left")
    for column in ("id", "user", "label", "scopes", "created", "expires", "state", "last used"):
        table.add_column(column)
    for token in tokens:
        table.add_row(token.id, token.user, token.label, ", ".join(sorted(token.scopes)),
                      iso(token.created_at), iso(token.expires_at), token.state(now),
                      _time(token.last_used_at) or "never")
    ctx.console.print(table)


@tokens_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(metavar="ID", help="Token id.")],
           json_out: Json = False) -> None:
    """Revoke a token at once; it cannot be used again."""
    with ctx.refusals():
        token = people.revoke_token(ctx.engine(), token_id, now=ctx.now(), by=None,
                                    actor=ctx.actor())
    if json_out:
        ctx.emit_json(_token_json(token, ctx.now()))
        return
    ctx.console.print(f"revoked token {token.id} ({token.label}) of {token.user}")


def _token_json(token: Token, now: datetime) -> dict[str, Any]:
    return {"id": token.id, "user": token.user, "label": token.label,
            "scopes": [scope.value for scope in sorted(token.scopes)],
            "created_at": iso(token.created_at), "expires_at": iso(token.expires_at),
            "revoked_at": _time(token.revoked_at), "last_used_at": _time(token.last_used_at),
            "state": token.state(now)}


def _time(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _yes(value: bool) -> str:
    return "yes" if value else "no"
