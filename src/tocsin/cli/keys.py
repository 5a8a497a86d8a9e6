"""`tocsin keys create|import|list|activate|retire|public`: the signing keys in
TOCSIN_KEYS_DIR. Private key material is never printed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tocsin.cli import context as ctx
from tocsin.domain.errors import InvalidInput
from tocsin.domain.times import iso
from tocsin.service import keys

app = typer.Typer(help="Signing keys: Ed25519 for public documents, X.509 for CAP alerts.",
                  no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
KINDS = ", ".join(str(k) for k in keys.KeyKind)
DEFAULT_DAYS = 730


def folder() -> Path:
    return Path(ctx.current_settings().keys_dir)


def _kind(value: str) -> keys.KeyKind:
    try:
        return keys.KeyKind(value)
    except ValueError:
        raise InvalidInput(f"key kind {value!r} is not known", f"use one of {KINDS}") from None


@app.command("create")
def create(
    kind: Annotated[str, typer.Argument(help=f"Kind of key: {KINDS}.")],
    subject: Annotated[str | None, typer.Option(
        help="cap: the certificate subject, e.g. 'CN=Alerts,O=Authority,C=KZ'.")] = None,
    days: Annotated[int | None, typer.Option(
        help=f"cap: days the certificate is valid (default {DEFAULT_DAYS}).")] = None,
    algorithm: Annotated[str | None, typer.Option(
        help="cap: rsa (RSA-3072, the default) or ecdsa (P-256).")] = None,
    json_out: Json = False,
) -> None:
    """Create a key and make it the active one of its kind (the previous one is retired)."""
    with ctx.refusals():
        chosen = _kind(kind)
        if chosen is keys.KeyKind.DOCUMENT:
            given = [flag for flag, value in (("--subject", subject), ("--days", days),
                                             ("--algorithm", algorithm)) if value is not None]
            if given:
                raise InvalidInput(f"{', '.join(given)} only apply to cap keys",
                                   "leave them out: document keys are always Ed25519")
            info = _audited("created", lambda: keys.create_document_key(folder(), now=ctx.now()))
        else:
            if not subject:
                raise InvalidInput("--subject is missing", "name the certificate's subject, "
                                   "e.g. --subject 'CN=Alerts,O=Authority,C=KZ'")
            named: str = subject
            info = _audited("created", lambda: keys.create_cap_key(
                folder(), subject=named, days=DEFAULT_DAYS if days is None else days,
                algorithm=algorithm or "rsa", now=ctx.now()))
    _done("created", info, json_out)


@app.command("import")
def import_(
    kind: Annotated[str, typer.Argument(help="Kind of key: cap.")],
    key: Annotated[Path, typer.Option(help="PEM file of the private key (unencrypted).")],
    cert: Annotated[Path, typer.Option(help="PEM file of the certificate, leaf first, "
                                       "then any chain.")],
    json_out: Json = False,
) -> None:
    """Import a CAP key and its certificate; it becomes the active CAP key."""
    with ctx.refusals():
        if _kind(kind) is not keys.KeyKind.CAP:
            raise InvalidInput("only cap keys can be imported",
                               "create document keys here: tocsin keys create document")
        key_pem, cert_pem = _read(key, "--key"), _read(cert, "--cert")
        info = _audited("imported", lambda: keys.import_cap_key(
            folder(), key_pem=key_pem, cert_pem=cert_pem, now=ctx.now()))
    _done("imported", info, json_out)


def _audited(action: str, make: Callable[[], keys.KeyInfo]) -> keys.KeyInfo:
    """The key store change `make`, written to the audit log with it."""
    return keys.audited(ctx.engine(), folder(), action, make, now=ctx.now(), actor=ctx.actor())


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"{flag} {path}: {error.strerror or error}",
                           "give a readable PEM file") from None


@app.command("list")
def list_(json_out: Json = False) -> None:
    """Every key, active and retired, oldest first."""
    with ctx.refusals():
        found = keys.list_keys(folder())
    if json_out:
        ctx.emit_json([k.as_json() for k in found])
        return
    if not found:
        ctx.console.print(f"no keys in {folder()} (create one: tocsin keys create document)")
        return
    table = Table(title=f"{len(found)} keys in {folder()}", title_justify="left")
    for column in ("id", "kind", "algorithm", "state", "created", "subject", "not after"):
        table.add_column(column)
    for k in found:
        table.add_row(k.id, str(k.kind), k.algorithm, str(k.state), iso(k.created),
                      k.subject or "—", iso(k.not_after) if k.not_after else "—")
    ctx.console.print(table)


@app.command("activate")
def activate(key_id: Annotated[str, typer.Argument(metavar="ID")], json_out: Json = False
             ) -> None:
    """Sign with this key from now on; the active key of its kind is retired."""
    with ctx.refusals():
        info = _audited("activated", lambda: keys.activate(folder(), key_id, now=ctx.now()))
    _done("activated", info, json_out)


@app.command("retire")
def retire(key_id: Annotated[str, typer.Argument(metavar="ID")], json_out: Json = False
           ) -> None:
    """Stop signing with this key; it stays listed so old signatures still verify."""
    with ctx.refusals():
        info = _audited("retired", lambda: keys.retire(folder(), key_id))
    _done("retired", info, json_out)
    if not json_out and not any(k.kind is info.kind and k.state is keys.KeyState.ACTIVE
                                for k in keys.list_keys(folder())):
        ctx.errors.print(f"note: no {info.kind} key is active now; nothing is signed with "
                         f"one until you run 'tocsin keys activate ID' or create a key")


@app.command("public")
def public(
    kind: Annotated[str, typer.Argument(help=f"Kind of key: {KINDS}.")] = "document",
    json_out: Json = False,
) -> None:
    """Print what to publish: the document public keys (JSON, for
    /.well-known/tocsin-keys.json) or the active CAP certificate (PEM)."""
    with ctx.refusals():
        if _kind(kind) is keys.KeyKind.DOCUMENT:
            ctx.emit_json(keys.public_keys_document(folder()))
            return
        pem = keys.active_certificate_pem(folder())
        if pem is None:
            raise InvalidInput("no CAP key is active", "create one: tocsin keys create cap "
                               "--subject 'CN=…', or import one: tocsin keys import cap")
    if json_out:
        active = next(k for k in keys.list_keys(folder())
                      if k.kind is keys.KeyKind.CAP and k.state is keys.KeyState.ACTIVE)
        ctx.emit_json({**active.as_json(), "certificate_pem": pem.decode()})
        return
    ctx.console.out(pem.decode(), end="", highlight=False)


def _done(verb: str, info: keys.KeyInfo, json_out: bool) -> None:
    if json_out:
        ctx.emit_json(info.as_json())
        return
    detail = f", {info.subject}, until {iso(info.not_after)}" if info.not_after else ""
    ctx.console.print(f"{verb} {info.kind} key {info.id} ({info.algorithm}{detail}), "
                      f"now {info.state}")
