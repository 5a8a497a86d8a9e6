"""`tocsin …`: the command line. Each command parses its flags, calls the service layer and
prints the result for people, or as JSON with --json. Bad input exits with code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from tocsin import settings
from tocsin.cli import context as ctx
from tocsin.cli import views
from tocsin.cli.areas import app as areas_app
from tocsin.cli.cap import app as cap_app
from tocsin.cli.demo import run_demo
from tocsin.cli.export import app as export_app
from tocsin.cli.ingest import ingest
from tocsin.cli.keys import app as keys_app
from tocsin.cli.notify import deliveries_app, serve_worker, subscriptions_app, worker
from tocsin.cli.people import tokens_app, users_app
from tocsin.cli.prune import prune
from tocsin.cli.schemes import app as schemes_app
from tocsin.domain.declaration import Declaration, DeclarationRequest, Statement
from tocsin.domain.errors import InvalidInput, Unavailable
from tocsin.domain.times import iso
from tocsin.ingest.declarations import parse_declaration, read_change_file
from tocsin.ingest.document import Document, is_text
from tocsin.render import data
from tocsin.render.explain import explain as explain_text
from tocsin.service import commands, queries
from tocsin.store.database import check_current, check_writable
from tocsin.web.publish import Published
from tocsin.web.publish import publish as publish_mirror
from tocsin.web.serve import serve_http
from tocsin.web.snapshot import build as build_snapshot

SETTINGS_HELP = "\n\n".join(f"{s.name}: {s.help}" for s in settings.ALL)

class TextOnly(TyperGroup):
    """The root command: refuses, before any command runs, an argument that is not text.
    Bytes that are not UTF-8 reach Python as lone surrogates, which no store, audit hash or
    terminal can hold; the refusal names the option they were given to."""

    def parse_args(self, context: Any, args: list[str]) -> list[str]:
        for i, arg in enumerate(args):
            if not is_text(arg):
                option = next((a for a in reversed(args[:i]) if a.startswith("-")), None)
                where = f"the value of {option}" if option else f"argument {i + 1}"
                with ctx.refusals():
                    raise InvalidInput(f"{where} ({arg!a}) is not UTF-8 text",
                                       "give it in UTF-8")
        return super().parse_args(context, args)


app = typer.Typer(
    cls=TextOnly,
    help="tocsin: declare colour-coded threat levels and publish them everywhere at once.\n\n"
    + SETTINGS_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(areas_app, name="areas")
app.add_typer(cap_app, name="cap")
app.add_typer(export_app, name="export")
app.add_typer(keys_app, name="keys")
app.add_typer(schemes_app, name="schemes")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(subscriptions_app, name="subscriptions")
app.add_typer(deliveries_app, name="deliveries")
app.command("ingest")(ingest)
audit_app = typer.Typer(help="Read and verify the hash-chained audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Lang = Annotated[str, typer.Option("--lang", help="Languages for names, e.g. 'kk' or 'ru,en'.")]
At = Annotated[str | None, typer.Option("--at", help="ISO 8601 instant with offset; default now.")]
SchemeOpt = Annotated[str | None, typer.Option("--scheme", help="Only this scheme.")]


@app.command()
def init(json_out: Json = False) -> None:
    """Create the database, or upgrade it to this version, and install the shipped schemes."""
    with ctx.refusals():
        report = commands.initialise(ctx.engine(), now=ctx.now(), actor=ctx.actor())
    if json_out:
        ctx.emit_json({"database": ctx.engine().url.render_as_string(hide_password=True),
                       "migrated_from": report.before, "migration": report.after,
                       "schemes_installed": list(report.schemes_installed)})
        return
    url = ctx.engine().url.render_as_string(hide_password=True)
    ctx.console.print(f"database {url} is at migration {report.after}"
                      + (f" (was {report.before})" if report.before != report.after else ""))
    if report.schemes_installed:
        ctx.console.print(f"installed schemes: {', '.join(report.schemes_installed)}")


@app.command()
def declare(
    scheme: Annotated[str | None, typer.Option(help="Scheme key, e.g. kz-terror.")] = None,
    level: Annotated[str | None, typer.Option(help="Level key, e.g. critical.")] = None,
    area: Annotated[list[str] | None, typer.Option("--area", help="Area code; repeat.")] = None,
    effective: Annotated[str | None, typer.Option(help="Start (ISO 8601); default now.")] = None,
    expires: Annotated[str | None, typer.Option(help="End (ISO 8601); default none.")] = None,
    headline: Annotated[str | None, typer.Option(help="Headline in --lang.")] = None,
    description: Annotated[str, typer.Option(help="Description in --lang.")] = "",
    measures: Annotated[str, typer.Option(help="What the authorities do, in --lang.")] = "",
    instructions: Annotated[str, typer.Option(help="What people should do, in --lang.")] = "",
    lang: Annotated[str | None, typer.Option(help="Language of the texts; default the "
                                             "scheme's default language.")] = None,
    replaces: Annotated[list[str] | None, typer.Option("--replaces",
                                                       help="Id replaced; repeat.")] = None,
    sender: Annotated[str | None, typer.Option(help="Declaring authority.")] = None,
    from_file: Annotated[Path | None, typer.Option(
        "--from-file", help="TOML/JSON change file: several declarations, many languages, "
        "published together.")] = None,
    draft: Annotated[bool, typer.Option("--draft", help="Save as a draft; publish later.")] = False,
    json_out: Json = False,
) -> None:
    """Declare a level for areas (published at once unless --draft)."""
    with ctx.refusals():
        default_sender = sender or ctx.current_settings().sender
        if from_file is not None:
            flags = [scheme, level, area, effective, expires, headline, replaces]
            if any(flags) or description or measures or instructions:
                raise InvalidInput("--from-file cannot be combined with declaration flags",
                                   "put everything in the file, or use flags only")
            requests = read_change_file(from_file, default_sender=default_sender)
        else:
            requests = [_request_from_flags(scheme, level, area or [], effective, expires,
                                            Statement(headline or "", description, measures,
                                                      instructions),
                                            lang, replaces or [], default_sender)]
        made = commands.declare(ctx.engine(), requests, now=ctx.now(), actor=ctx.actor(),
                                publish=not draft)
    if json_out:
        ctx.emit_json([data.declaration_json(d) for d in made])
        return
    for d in made:
        _print_declaration("published" if d.is_published else "saved draft", d)


def _print_declaration(verb: str, d: Declaration) -> None:
    start = iso(d.effective) if d.effective else "publication"
    end = iso(d.expires) if d.expires else "further notice"
    ctx.console.print(f"{verb} {d.id}: {d.scheme} {d.level} for {', '.join(d.areas)}, "
                      f"from {start} until {end}")


def _request_from_flags(scheme: str | None, level: str | None, areas: list[str],
                        effective: str | None, expires: str | None, statement: Statement,
                        lang: str | None, replaces: list[str], sender: str) -> DeclarationRequest:
    """Flags become the same document a change file holds, read by the same parser."""
    for name, value in (("--scheme", scheme), ("--level", level), ("--headline",
                                                                  statement.headline)):
        if not value:
            raise InvalidInput(f"{name} is missing", "give it, or use --from-file FILE")
    if not areas:
        raise InvalidInput("--area is missing", "name at least one area, e.g. --area KZ")
    language = lang or _default_language(scheme or "")
    document = {
        "scheme": scheme, "level": level, "areas": areas, "replaces": replaces,
        "sender": sender, "texts": {language: statement.as_dict()},
        **({"effective": effective} if effective else {}),
        **({"expires": expires} if expires else {}),
    }
    return parse_declaration(Document(document, "command line"), default_sender=sender)


def _default_language(scheme: str) -> str:
    return queries.load_scheme(ctx.engine(), scheme).default_language


@app.command()
def publish(
    ids: Annotated[list[str] | None, typer.Argument(help="Draft ids to publish.")] = None,
    to: Annotated[Path | None, typer.Option(
        "--to", help="Bring the static mirror in this folder up to date: only changed files "
        "are written, only its own vanished files deleted.")] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="With --to: render every document and compare it with the file on "
        "disk, repairing a mirror changed by hand.")] = False,
    json_out: Json = False,
) -> None:
    """Publish drafts (all in one transaction), or with --to DIR update the static mirror."""
    with ctx.refusals():
        if to is not None:
            if ids:
                raise InvalidInput("give either draft ids or --to DIR, not both")
            check_current(ctx.engine())
            # Not pre-rendered: the mirror renders only the groups of documents that changed.
            snapshot = build_snapshot(ctx.engine(), ctx.now(), prerender=False)
            _print_mirror(publish_mirror(snapshot, to, full=full), json_out)
            return
        if full:
            raise InvalidInput("--full applies to the static mirror", "add --to DIR")
        if not ids:
            raise InvalidInput("no draft id given", "tocsin publish ID…, or --to DIR")
        done = commands.publish(ctx.engine(), ids, now=ctx.now(), actor=ctx.actor())
    if json_out:
        ctx.emit_json([data.declaration_json(d) for d in done])
        return
    for d in done:
        _print_declaration("published", d)


def _print_mirror(result: Published, json_out: bool) -> None:
    if json_out:
        ctx.emit_json({"folder": str(result.folder), "version": result.version,
                       "files": result.files, "bytes": result.bytes,
                       "written": result.written, "unchanged": result.unchanged,
                       "deleted": result.deleted, "bytes_written": result.bytes_written,
                       "rendered": result.rendered, "seconds": round(result.seconds, 3)})
        return
    ctx.console.print(f"wrote {result.written} files ({result.bytes_written:,} bytes), "
                      f"{result.unchanged} unchanged, {result.deleted} deleted, "
                      f"in {result.seconds:.2f} s")
    ctx.console.print(f"{result.folder} holds {result.files} documents ({result.bytes:,} "
                      f"bytes) of version {result.version}")


@app.command()
def cancel(declaration_id: Annotated[str, typer.Argument(metavar="ID")],
           reason: Annotated[str, typer.Option(help="Why the level ends early.")],
           json_out: Json = False) -> None:
    """End a published declaration now, before its term."""
    with ctx.refusals():
        d = commands.cancel(ctx.engine(), declaration_id, reason=reason, now=ctx.now(),
                            actor=ctx.actor())
    if json_out:
        ctx.emit_json(data.declaration_json(d))
        return
    ctx.console.print(f"cancelled {d.id}")


@app.command()
def status(area: Annotated[str | None, typer.Argument(help="Area code; default all.")] = None,
           scheme: SchemeOpt = None, at: At = None, lang: Lang = "en",
           json_out: Json = False) -> None:
    """The effective level of every area (or one) at an instant."""
    with ctx.refusals():
        when = ctx.at_or_now(at)
        languages = ctx.languages(lang)
        world = queries.load_world(ctx.engine())
        statuses = world.status(when, area=area, scheme=scheme)
    if json_out:
        ctx.emit_json({"at": iso(when), "levels": [
            {"area": s.area.code, "scheme": s.scheme.key, **data.effective_json(s.effective,
                                                                                s.period)}
            for s in statuses]})
        return
    ctx.console.print(views.status_table(world.tree, statuses, languages,
                                         f"levels at {iso(when)}"))


@app.command()
def explain(area: Annotated[str, typer.Argument(help="Area code.")], scheme: SchemeOpt = None,
            at: At = None, lang: Lang = "en", json_out: Json = False) -> None:
    """Why an area has its level: which declarations, inherited from where, since when."""
    with ctx.refusals():
        when = ctx.at_or_now(at)
        languages = ctx.languages(lang)
        world = queries.load_world(ctx.engine())
        statuses = world.status(when, area=area, scheme=scheme)
    lines = [explain_text(world.tree, s.scheme, s.effective, s.period, languages)
             for s in statuses]
    if json_out:
        ctx.emit_json({"at": iso(when), "explanations": [
            {"area": s.area.code, "scheme": s.scheme.key, "text": text,
             **data.effective_json(s.effective, s.period)}
            for s, text in zip(statuses, lines, strict=True)]})
        return
    for text in lines:
        ctx.console.print(text)


@app.command()
def history(area: Annotated[str, typer.Argument(help="Area code.")], scheme: SchemeOpt = None,
            lang: Lang = "en", json_out: Json = False) -> None:
    """An area's levels over time and every declaration that touched it."""
    with ctx.refusals():
        languages = ctx.languages(lang)
        world = queries.load_world(ctx.engine())
        code = world.tree.get(area).code
        keys = [world.scheme(scheme).key] if scheme else world.used_schemes()
        timelines = {key: world.timeline(code, key) for key in keys}
        declarations = [d for d in world.declarations_for(code) if d.scheme in keys]
    replaced = {d.id: world.replaced_by(d.id) for d in declarations}
    if json_out:
        ctx.emit_json({
            "area": code,
            "timeline": {key: [data.period_json(p) for p in periods]
                         for key, periods in timelines.items()},
            "declarations": [data.declaration_json(d, replaced_by=replaced[d.id])
                             for d in declarations],
        })
        return
    for key, periods in timelines.items():
        ctx.console.print(views.timeline_table(world.tree, code, key, periods, languages))
    ctx.console.print(views.declarations_table(world.tree, code, declarations, replaced,
                                               languages))


@audit_app.command("verify")
def audit_verify(
    head: Annotated[str | None, typer.Option(
        help="A head published earlier, SEQ:HASH; the chain must still contain it.")] = None,
    json_out: Json = False,
) -> None:
    """Check every entry's hash and link; name the first broken entry. Exit 1 if broken."""
    with ctx.refusals():
        published = _parse_head(head) if head else None
        verdict = queries.verify_audit(ctx.engine(), published_head=published)
    if json_out:
        ctx.emit_json(data.verdict_json(verdict))
    elif verdict.ok:
        ctx.console.print(f"audit chain intact: {verdict.checked} entries, head "
                          f"{verdict.head_seq}:{verdict.head_hash}")
    else:
        ctx.errors.print(f"audit chain BROKEN at entry {verdict.broken_seq}: {verdict.problem}")
    if not verdict.ok:
        raise typer.Exit(ctx.EXIT_FINDING)


def _parse_head(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise InvalidInput(f"--head {text!r} is not SEQ:HASH",
                           "give it as printed by 'tocsin audit verify', e.g. 12:3fa9…(64 hex)")
    return int(seq), digest


@audit_app.command("show")
def audit_show(limit: Annotated[int, typer.Option(min=1, help="Newest entries to show.")] = 20,
               json_out: Json = False) -> None:
    """The newest audit entries."""
    with ctx.refusals():
        entries = queries.audit_tail(ctx.engine(), limit)
    if json_out:
        ctx.emit_json([data.audit_entry_json(e) for e in entries])
        return
    for e in entries:
        ctx.console.print(f"{e.seq:>6} {iso(e.at)} {e.actor} {e.action} {e.subject} "
                          f"{e.hash[:16]}…")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes.")] = 1,
    no_worker: Annotated[bool, typer.Option(
        "--no-worker", help="Run no notification worker beside the server (run 'tocsin "
        "worker' processes instead).")] = False,
) -> None:
    """Serve the public pages, JSON API, SVG map and badges, and live updates.

    A notification worker runs beside the server unless --no-worker."""
    with ctx.refusals():
        check_current(ctx.engine())
        if not no_worker:
            try:
                check_writable(ctx.engine(), "the notification worker beside the server "
                               "writes")
            except Unavailable as error:
                raise Unavailable(error.problem, "to serve a read-only copy, add --no-worker "
                                  "(pages and the API answer; changes are refused)") from error
        serve_http(ctx.engine(), host=host, port=port, workers=workers,
                   notifier=None if no_worker else serve_worker)


app.command("worker")(worker)
app.command("prune")(prune)


@app.command()
def demo(
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Folder for the demo database; default a new temporary folder.")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port for the demo server.")
                    ] = 8000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Replay and print only.")
                        ] = False,
) -> None:
    """Replay January 2022 in Kazakhstan on a fresh SQLite database, show the levels, and
    serve the public pages at http://127.0.0.1:PORT."""
    with ctx.refusals():
        engine = run_demo(directory)
        if not no_serve:
            serve_http(engine, host="127.0.0.1", port=port, workers=1, notifier=serve_worker)


def run() -> None:
    app()
