"""`tocsin export cap ID`: a declaration's CAP message, byte for byte what /cap/ID.xml serves.

A thin adapter: it loads the published world and calls the same renderer as the snapshot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tocsin.cli import context as ctx
from tocsin.domain.errors import InvalidInput
from tocsin.render import feeds, urls
from tocsin.service import queries

app = typer.Typer(help="Export public documents, e.g. a declaration's CAP 1.2 alert.",
                  no_args_is_help=True)


@app.command("cap")
def cap(
    declaration_id: Annotated[str, typer.Argument(metavar="ID", help="Declaration id.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the XML to this file instead of standard output.")] = None,
    cancel: Annotated[bool, typer.Option(
        "--cancel", help="The Cancel message of a cancelled declaration.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print what was exported as JSON (the XML inside unless --out).")
    ] = False,
) -> None:
    """Print a published declaration's CAP 1.2 Alert (an Update when it replaces others,
    referencing every earlier message), or with --cancel its Cancel."""
    with ctx.refusals():
        config = ctx.current_settings()
        publication = feeds.Publication(config.public_url, config.cap_sender)
        world = queries.load_world(ctx.engine(), published_only=True)
        render = feeds.cap_cancel_message if cancel else feeds.cap_message
        body = render(world, declaration_id, publication)
        declaration = world.declarations[declaration_id]
        if out is not None:
            _write(out, body)
    if cancel:
        identifier = feeds.cancel_identifier(declaration, publication)
        kind, path = "Cancel", urls.cap_cancel(declaration_id)
    else:
        identifier = feeds.cap_identifier(declaration, publication)
        kind = str(feeds.message_type(world, declaration, publication))
        path = urls.cap(declaration_id)
    if json_out:
        ctx.emit_json({"id": declaration_id, "msg_type": kind, "identifier": identifier,
                       "url": publication.absolute(path), "bytes": len(body),
                       "file": str(out) if out is not None else None,
                       **({} if out is not None else {"xml": body.decode("utf-8")})})
    elif out is not None:
        ctx.console.print(f"wrote the CAP {kind} {identifier} ({len(body):,} bytes) to {out}")
    else:
        stream = typer.get_binary_stream("stdout")
        stream.write(body)
        stream.flush()


def _write(out: Path, body: bytes) -> None:
    try:
        out.write_bytes(body)
    except IsADirectoryError:
        raise InvalidInput(f"--out {out}: is a folder", "give a file name, e.g. alert.xml"
                           ) from None
    except OSError as error:
        raise InvalidInput(f"--out {out}: cannot be written ({error.strerror})",
                           "check the folder exists and that you may write there") from None
