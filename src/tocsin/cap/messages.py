"""The CAP messages a declaration publishes: its Alert (or, when it replaces earlier ones,
its Update) and, once cancelled, its Cancel, with the references that tie them together.

Made when a declaration is published or cancelled (tocsin.service.exports stores them) and
by every door that shows them (/cap/ID.xml, the feeds, `tocsin export cap`), so it depends
only on the domain and the alert builder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol
from urllib.parse import quote

from tocsin.cap.alert import MsgType, Reference, cap_alert, identifier_of
from tocsin.domain.area import AreaTree
from tocsin.domain.declaration import Declaration
from tocsin.domain.errors import NotFound, unknown
from tocsin.domain.scheme import Scheme

ALL_HINT = "find published ids with 'tocsin history AREA' or at /api/v1/declarations"


class Declared(Protocol):
    """What the messages are made from: areas, schemes and declarations
    (tocsin.service.queries.World is one)."""

    @property
    def tree(self) -> AreaTree: ...

    @property
    def declarations(self) -> Mapping[str, Declaration]: ...

    def declaration(self, declaration_id: str) -> Declaration | None:
        """Any declaration by id, also one `declarations` no longer holds."""

    def ids_like(self, declaration_id: str) -> list[str]:
        """Published ids that may be what `declaration_id` meant (for suggestions)."""

    def scheme(self, key: str) -> Scheme: ...


@dataclass(frozen=True)
class Publication:
    """Where and as whom a snapshot publishes: the site's absolute address (no trailing
    slash) and the CAP sender of declarations published before senders were recorded."""

    public_url: str
    default_sender: str

    def absolute(self, path: str) -> str:
        return self.public_url + path

    def declaration_page(self, declaration_id: str) -> str:
        """The declaration's public page, which a message names as its <web>: the path of
        tocsin.render.urls.declaration without a language (a test keeps the two equal)."""
        return self.absolute(f"/declarations/{quote(declaration_id, safe='')}")


def sender_of(declaration: Declaration, publication: Publication) -> str:
    """The CAP <sender> of a declaration: fixed at publication, else the configured one."""
    return declaration.cap_sender or publication.default_sender


def sent_of(declaration: Declaration) -> datetime:
    """When its Alert or Update was sent: its publication."""
    return declaration.published_at or declaration.created_at


def cap_identifier(declaration: Declaration, publication: Publication) -> str:
    return identifier_of(sender_of(declaration, publication), declaration.id)


def cancel_identifier(declaration: Declaration, publication: Publication) -> str:
    return identifier_of(sender_of(declaration, publication), f"{declaration.id}-cancel")


def earlier_messages(world: Declared, declaration: Declaration,
                     publication: Publication) -> list[Reference]:
    """Every message a declaration's Update supersedes: the declarations it replaces, and
    theirs, transitively, oldest first. Empty for a declaration that replaces nothing."""
    seen: dict[str, Declaration] = {}
    queue = list(declaration.replaces)
    while queue:
        old_id = queue.pop()
        old = world.declaration(old_id)
        if old is None or old_id in seen or not old.is_published:
            continue
        seen[old_id] = old
        queue.extend(old.replaces)
    chain = sorted(seen.values(), key=lambda d: (sent_of(d), d.id))
    return [Reference(sender_of(d, publication), cap_identifier(d, publication), sent_of(d))
            for d in chain]


def message_type(world: Declared, declaration: Declaration,
                 publication: Publication) -> MsgType:
    """Update when it replaces earlier messages, else Alert."""
    return MsgType.UPDATE if earlier_messages(world, declaration, publication) else MsgType.ALERT


def cap_message(world: Declared, declaration_id: str, publication: Publication) -> bytes:
    """The CAP Alert (or Update) of a published declaration, as /cap/ID.xml serves it.

    NotFound (with close matches) for an id that names no published declaration.
    """
    declaration = published(world, declaration_id)
    references = earlier_messages(world, declaration, publication)
    return cap_alert(declaration, scheme=world.scheme(declaration.scheme), tree=world.tree,
                     sender=sender_of(declaration, publication), sent=sent_of(declaration),
                     msg_type=MsgType.UPDATE if references else MsgType.ALERT,
                     references=references,
                     permalink=publication.declaration_page(declaration.id))


def cap_cancel_message(world: Declared, declaration_id: str,
                       publication: Publication) -> bytes:
    """The CAP Cancel of a cancelled declaration: it references the declaration's own
    message, is sent at the cancellation and carries the reason as its note.

    NotFound for an unknown id, or one that was not cancelled.
    """
    declaration = published(world, declaration_id)
    cancellation = declaration.cancellation
    if cancellation is None:
        raise NotFound(f"declaration {declaration_id!r} was not cancelled",
                       f"its alert is at /cap/{quote(declaration_id, safe='')}.xml")
    sender = sender_of(declaration, publication)
    own = Reference(sender, identifier_of(sender, declaration.id), sent_of(declaration))
    # cap_alert derives <identifier> from the declaration's id; the Cancel is its own message.
    message = replace(declaration, id=f"{declaration.id}-cancel")
    return cap_alert(message, scheme=world.scheme(declaration.scheme), tree=world.tree,
                     sender=sender, sent=cancellation.at, msg_type=MsgType.CANCEL,
                     references=[own], note=cancellation.reason,
                     permalink=publication.declaration_page(declaration.id))


def published(world: Declared, declaration_id: str) -> Declaration:
    """The published declaration `declaration_id`; NotFound (with close matches) else."""
    declaration = world.declaration(declaration_id)
    if declaration is None or not declaration.is_published:
        raise unknown("declaration", declaration_id, world.ids_like(declaration_id), ALL_HINT)
    return declaration
