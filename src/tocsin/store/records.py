"""Reading and writing domain values: rows in, frozen dataclasses out, and back."""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, overload

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    Text,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    type_coerce,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from tocsin.domain.area import Area, AreaKind, AreaTree
from tocsin.domain.audit import AuditEntry
from tocsin.domain.declaration import (
    Cancellation,
    CancelRequest,
    Declaration,
    Rejection,
    Statement,
    Status,
)
from tocsin.domain.scheme import Scheme
from tocsin.ingest.schemes import parse_scheme
from tocsin.store import tables as t

# --- schemes ---------------------------------------------------------------------------------


def load_scheme_documents(conn: Connection) -> dict[str, dict[str, Any]]:
    rows = conn.execute(select(t.schemes.c.key, t.schemes.c.document).order_by(t.schemes.c.key))
    return {row.key: row.document for row in rows}


def load_schemes(conn: Connection) -> dict[str, Scheme]:
    """Every stored scheme, parsed by the same parser as scheme files."""
    return {key: _parsed(key, json.dumps(doc, sort_keys=True))
            for key, doc in load_scheme_documents(conn).items()}


@lru_cache(maxsize=64)
def _parsed(key: str, document: str) -> Scheme:
    """Schemes change rarely and snapshots are rebuilt often: parse each version once."""
    return parse_scheme(json.loads(document), f"stored scheme {key!r}")


# --- areas -----------------------------------------------------------------------------------


def load_tree(conn: Connection) -> AreaTree:
    """Every area. Rows are read as the driver gives them, and names and shapes are parsed
    when first read (`StoredJson`): a server starting on 100,000 areas reads only the few it
    shows. Read once a transaction (a write asks for it several times: to check the areas
    named, to find whose levels changed, to write the CAP message), until areas are written
    in it."""
    transaction = conn.get_transaction()
    if transaction is None:
        return _read_tree(conn)
    found = _TREES.get(transaction)
    if found is None:
        found = _TREES[transaction] = _read_tree(conn)
    return found


_TREES: weakref.WeakKeyDictionary[Any, AreaTree] = weakref.WeakKeyDictionary()
"""The area tree each open transaction read (see `load_tree`); gone with the transaction."""


def _read_tree(conn: Connection) -> AreaTree:
    a = t.areas
    query = select(a.c.code, a.c.kind, type_coerce(a.c.names, Text), a.c.parent,
                   type_coerce(a.c.geocodes, Text), a.c.timezone,
                   type_coerce(a.c.geometry, Text), a.c.grid_row, a.c.grid_col, a.c.position)
    # The driver's own cursor, in this connection's transaction: at 100,000 rows, making a
    # result row object for each costs more than everything else here. Sorted here: SQLite
    # sorting rows this wide costs more than Python sorting them.
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(query.compile(dialect=conn.dialect)))
        rows = sorted(cursor.fetchall(), key=_POSITION_THEN_CODE)
    finally:
        cursor.close()
    kinds = {kind.value: kind for kind in AreaKind}
    areas = (Area(code, kinds[kind], StoredJson(names), parent, StoredPairs(geocodes), timezone,
                  StoredJson(geometry) if _present(geometry) else None,
                  (row, col) if row is not None else None)
             for code, kind, names, parent, geocodes, timezone, geometry, row, col, _ in rows)
    return AreaTree.build(areas, checked=True)  # checked by the import that stored them


_POSITION_THEN_CODE = itemgetter(9, 0)


def _json(stored: str | Any) -> Any:
    return json.loads(stored) if isinstance(stored, str) else stored


def _present(stored: str | Any) -> bool:
    """Whether a JSON column holds something other than SQL or JSON null."""
    return stored is not None and stored != "null"


class StoredPairs(Sequence[tuple[str, str]]):
    """A stored JSON list of pairs, parsed (into tuples) when first read."""

    __slots__ = ("_parsed", "_stored")

    def __init__(self, stored: str | Sequence[Sequence[str]] | None) -> None:
        self._stored = stored
        self._parsed: tuple[tuple[str, str], ...] | None = None

    def _value(self) -> tuple[tuple[str, str], ...]:
        parsed = self._parsed
        if parsed is None:
            stored = _json(self._stored) if self._stored is not None else ()
            parsed = self._parsed = tuple((name, value) for name, value in stored)
        return parsed

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, str]]: ...

    def __getitem__(self, index: int | slice) -> tuple[str, str] | Sequence[tuple[str, str]]:
        return self._value()[index]

    def __len__(self) -> int:
        return len(self._value())

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __hash__(self) -> int:
        return hash(self._value())

    def __repr__(self) -> str:
        return repr(self._value())


class StoredJson(Mapping[str, Any]):
    """A stored JSON object, parsed when first read; compares equal to the same dict."""

    __slots__ = ("_parsed", "_stored")

    def __init__(self, stored: str | Mapping[str, Any]) -> None:
        self._stored = stored
        self._parsed: Mapping[str, Any] | None = None

    def _value(self) -> Mapping[str, Any]:
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = _json(self._stored)
        return parsed

    def __getitem__(self, key: str) -> Any:
        return self._value()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._value())

    def __len__(self) -> int:
        return len(self._value())

    def __contains__(self, key: object) -> bool:
        return key in self._value()

    def __repr__(self) -> str:
        return repr(self._value())


def save_areas(conn: Connection, tree: AreaTree, changed: Iterable[Area]) -> None:
    """Insert or update `changed` areas of `tree`, parents before children."""
    transaction = conn.get_transaction()
    if transaction is not None:
        _TREES.pop(transaction, None)  # this transaction reads the tree again
    existing = set(conn.execute(select(t.areas.c.code)).scalars())
    position = conn.execute(select(func.coalesce(func.max(t.areas.c.position), 0))).scalar_one()
    wanted = {area.code for area in changed}
    for code in tree.order:
        if code not in wanted:
            continue
        area = tree.areas[code]
        values = {
            "parent": area.parent,
            "kind": area.kind.value,
            "names": dict(area.names),
            "geocodes": [list(pair) for pair in area.geocodes],
            "timezone": area.timezone,
            "geometry": dict(area.geometry) if area.geometry is not None else None,
            "grid_row": area.grid[0] if area.grid else None,
            "grid_col": area.grid[1] if area.grid else None,
        }
        if code in existing:
            conn.execute(update(t.areas).where(t.areas.c.code == code).values(**values))
        else:
            position += 1
            conn.execute(insert(t.areas).values(code=code, position=position, **values))


# --- declarations ----------------------------------------------------------------------------


def load_declarations(
    conn: Connection, *, ids: Sequence[str] | None = None, scheme: str | None = None,
    area_codes: Sequence[str] | None = None, statuses: Sequence[Status] | None = None,
    holding_from: datetime | None = None, holding_at: datetime | None = None,
    ended_by: datetime | None = None, effective_from: datetime | None = None,
    effective_until: datetime | None = None,
) -> dict[str, Declaration]:
    """Declarations by id, optionally only those with the given ids, scheme, areas or status;
    oldest first. With `holding_from`, only the published declarations that may still hold
    at or after it (their `ends_at` is later or never), and with `holding_at`, those holding
    at that instant; both add every declaration replacing one of them, so that when each of
    them ends is known. `ended_by`: only published declarations over by then (closed
    history: nothing changes them any more). `effective_from`/`effective_until`: taking
    effect in that range.

    Five statements whatever the number: every snapshot reads the whole published history.
    Texts are parsed when first read (`StoredTexts`).
    """
    if holding_from is not None or holding_at is not None:
        at = holding_at if holding_at is not None else holding_from
        assert at is not None
        found = _holding_ids(conn, at, started=holding_at is not None)
        if ids is not None:
            found = [key for key in found if key in set(ids)]
        return load_declarations(conn, ids=found, scheme=scheme, area_codes=area_codes,
                                 statuses=statuses, ended_by=ended_by,
                                 effective_from=effective_from,
                                 effective_until=effective_until)
    d = t.declarations
    wanted: list[ColumnElement[bool]] = []
    if ids is not None:
        if not ids:
            return {}
        wanted.append(among(conn, d.c.id, ids))
    if scheme is not None:
        wanted.append(d.c.scheme == scheme)
    if area_codes is not None:
        wanted.append(d.c.id.in_(select(t.declaration_areas.c.declaration_id).where(
            t.declaration_areas.c.area_code.in_(list(area_codes)))))
    if ended_by is not None:
        wanted += [d.c.status == Status.PUBLISHED.value, d.c.ends_at <= ended_by]
    if effective_from is not None:
        wanted.append(d.c.effective_at >= effective_from)
    if effective_until is not None:
        wanted.append(d.c.effective_at < effective_until)
    # By status alone (a snapshot: every published one), nearly every row is wanted: the linked
    # rows are read whole, which costs less than looking each declaration up.
    whole = not wanted
    kept = {s.value for s in statuses} if statuses is not None else None
    if kept is not None and ids is None:
        # (By id, the status is tested here: a status test beside a list of ids can make
        # the database read every row of that status.)
        wanted.append(d.c.status.in_(sorted(kept)))
    # Rows come in about insertion order, which is nearly creation order: sorting them here
    # costs one pass, where the database would sort every row with its texts.
    rows = sorted(conn.execute(
        select(d.c.id, d.c.scheme, d.c.level, d.c.status, d.c.effective_at, d.c.expires_at,
               type_coerce(d.c.texts, Text), d.c.sender, d.c.created_at, d.c.created_by,
               d.c.published_at, d.c.published_by, d.c.revision, d.c.submitted_at,
               d.c.break_glass, d.c.rejected_at, d.c.rejected_by, d.c.rejected_reason,
               d.c.cap_sender).where(*wanted)), key=_CREATED_THEN_ID)
    if kept is not None and ids is not None:
        rows = [row for row in rows if row[3] in kept]
    if not rows:
        return {}
    found = [row[0] for row in rows]

    def linked(table: Table, *columns: str, ordered: bool = False) -> Iterable[Any]:
        query = select(table.c.declaration_id, *(table.c[c] for c in columns))
        if ordered:
            query = query.order_by(table.c.position)
        if whole:
            return conn.execute(query).all()
        return conn.execute(query.where(among(conn, table.c.declaration_id, found))).all()

    areas: dict[str, tuple[str, ...]] = {}
    for declaration_id, code in linked(t.declaration_areas, "area_code", ordered=True):
        areas[declaration_id] = (*areas.get(declaration_id, ()), code)
    replaces: dict[str, tuple[str, ...]] = {}
    for declaration_id, old in linked(t.declaration_replaces, "replaces_id", ordered=True):
        replaces[declaration_id] = (*replaces.get(declaration_id, ()), old)
    cancels = {declaration_id: Cancellation(at, reason, by) for declaration_id, at, reason, by
               in linked(t.cancellations, "at", "reason", "actor")}
    asked = {declaration_id: CancelRequest(at, reason, by) for declaration_id, at, reason, by
             in linked(t.cancel_requests, "at", "reason", "actor")}
    # The same few names and keys recur in every row: keep one copy of each.
    same: dict[Any, Any] = {}
    once = same.setdefault
    out: dict[str, Declaration] = {}
    for (id_, scheme_key, level, status, effective, expires, texts, sender, created_at,
         created_by, published_at, published_by, revision, submitted_at, break_glass,
         rejected_at, rejected_by, rejected_reason, cap_sender) in rows:
        out[id_] = Declaration(
            id=id_,
            scheme=once(scheme_key, scheme_key),
            level=once(level, level),
            areas=areas.get(id_, ()),
            texts=StoredTexts(texts),
            sender=once(sender, sender),
            effective=effective,
            expires=expires,
            replaces=replaces.get(id_, ()),
            status=_STATUSES[status],
            created_at=created_at,
            created_by=once(created_by, created_by),
            published_at=published_at,
            published_by=once(published_by, published_by),
            cancellation=cancels.get(id_),
            revision=revision,
            submitted_at=submitted_at,
            break_glass=break_glass,
            cap_sender=once(cap_sender, cap_sender),
            rejection=(Rejection(rejected_at, rejected_reason or "", rejected_by or "")
                       if rejected_at is not None else None),
            cancel_request=asked.get(id_),
        )
    return out


_STATUSES = {status.value: status for status in Status}
_CREATED_THEN_ID = itemgetter(8, 0)
"""(created_at, id) of a row of `load_declarations`."""


class StoredTexts(Mapping[str, Statement]):
    """A stored declaration's texts by language, parsed when first read.

    A snapshot holds the whole published history, and only the pages and messages that show a
    declaration read its texts: parsing them all at load time would cost most of the load
    and memory for nothing. Compares equal to a dict with the same statements.
    """

    __slots__ = ("_parsed", "_stored")

    def __init__(self, stored: str | Mapping[str, Any]) -> None:
        self._stored = stored
        """The JSON text (SQLite) or the object the driver already parsed (PostgreSQL)."""
        self._parsed: dict[str, Statement] | None = None

    def _texts(self) -> dict[str, Statement]:
        parsed = self._parsed
        if parsed is None:
            stored = self._stored
            document = json.loads(stored) if isinstance(stored, str) else stored
            parsed = {lang: Statement(**value) for lang, value in document.items()}
            self._parsed = parsed
        return parsed

    def __getitem__(self, lang: str) -> Statement:
        return self._texts()[lang]

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts())

    def __len__(self) -> int:
        return len(self._texts())

    def __contains__(self, lang: object) -> bool:
        return lang in self._texts()

    def __repr__(self) -> str:
        return repr(self._texts())


def load_replacers(conn: Connection, ids: Sequence[str]) -> dict[str, Declaration]:
    """The declarations that name any of `ids` in their replaces list."""
    replacer_ids = conn.execute(select(t.declaration_replaces.c.declaration_id).where(
        among(conn, t.declaration_replaces.c.replaces_id, ids))).scalars().all()
    return load_declarations(conn, ids=list(replacer_ids)) if replacer_ids else {}


def insert_declaration(conn: Connection, d: Declaration) -> None:
    conn.execute(insert(t.declarations).values(
        id=d.id, scheme=d.scheme, level=d.level, status=d.status.value,
        effective_at=d.effective, expires_at=d.expires,
        texts={lang: s.as_dict() for lang, s in d.texts.items()},
        sender=d.sender, created_at=d.created_at, created_by=d.created_by,
        published_at=d.published_at, published_by=d.published_by,
        revision=d.revision, submitted_at=d.submitted_at, break_glass=d.break_glass,
        cap_sender=d.cap_sender,
    ))
    _insert_links(conn, d)
    if d.status is Status.PUBLISHED:
        settle_ends(conn, [d.id, *d.replaces])


def _insert_links(conn: Connection, d: Declaration) -> None:
    if d.areas:
        conn.execute(insert(t.declaration_areas), [
            {"declaration_id": d.id, "area_code": code, "position": i}
            for i, code in enumerate(d.areas)])
    if d.replaces:
        conn.execute(insert(t.declaration_replaces), [
            {"declaration_id": d.id, "replaces_id": old, "position": i}
            for i, old in enumerate(d.replaces)])


UNPUBLISHED = (Status.DRAFT.value, Status.PENDING.value)


def mark_published(conn: Connection, d: Declaration) -> None:
    """Record a draft's or pending declaration's publication; after it the row never changes."""
    conn.execute(update(t.declarations)
                 .where(t.declarations.c.id == d.id, t.declarations.c.status.in_(UNPUBLISHED))
                 .values(status=d.status.value, effective_at=d.effective,
                         published_at=d.published_at, published_by=d.published_by,
                         break_glass=d.break_glass, cap_sender=d.cap_sender))
    settle_ends(conn, [d.id, *d.replaces])


def update_unpublished(conn: Connection, d: Declaration) -> None:
    """Store a draft's or pending declaration's new state (edit, submission, rejection)."""
    rejection = d.rejection
    result = conn.execute(
        update(t.declarations)
        .where(t.declarations.c.id == d.id, t.declarations.c.status.in_(UNPUBLISHED))
        .values(scheme=d.scheme, level=d.level, status=d.status.value,
                effective_at=d.effective, expires_at=d.expires,
                texts={lang: s.as_dict() for lang, s in d.texts.items()}, sender=d.sender,
                revision=d.revision, submitted_at=d.submitted_at,
                rejected_at=rejection.at if rejection else None,
                rejected_by=rejection.by if rejection else None,
                rejected_reason=rejection.reason if rejection else None))
    assert result.rowcount == 1, f"declaration {d.id} is no longer unpublished"
    for table in (t.declaration_areas, t.declaration_replaces):
        conn.execute(delete(table).where(table.c.declaration_id == d.id))
    _insert_links(conn, d)


def insert_cancel_request(conn: Connection, declaration_id: str, c: CancelRequest) -> None:
    conn.execute(insert(t.cancel_requests).values(
        declaration_id=declaration_id, at=c.at, reason=c.reason, actor=c.by))


def delete_cancel_request(conn: Connection, declaration_id: str) -> None:
    conn.execute(delete(t.cancel_requests).where(
        t.cancel_requests.c.declaration_id == declaration_id))


def insert_cancellation(conn: Connection, declaration_id: str, c: Cancellation) -> None:
    conn.execute(insert(t.cancellations).values(
        declaration_id=declaration_id, at=c.at, reason=c.reason, actor=c.by))
    settle_ends(conn, [declaration_id])


def settle_ends(conn: Connection, ids: Sequence[str]) -> None:
    """Write when each of the published declarations `ids` stops holding (`ends_at`): the
    earliest of its expiry, its cancellation and the start of the first published
    declaration replacing it (as `declaration.end_of`); NULL when none of these exists.

    Rows are found by id and their status tested here: a status test beside a list of ids
    can make the database read every row of that status."""
    d, c, r = t.declarations, t.cancellations, t.declaration_replaces
    published = Status.PUBLISHED.value
    wanted = sorted(set(ids))
    ends: dict[str, list[datetime]] = {
        key: [expires] if expires is not None else []
        for key, status, expires in conn.execute(
            select(d.c.id, d.c.status, d.c.expires_at).where(d.c.id.in_(wanted)))
        if status == published}
    if not ends:
        return
    found: list[tuple[str, datetime | None]] = [
        (key, at) for key, at in conn.execute(select(c.c.declaration_id, c.c.at)
                                              .where(c.c.declaration_id.in_(list(ends))))]
    replacing = list(conn.execute(select(r.c.replaces_id, r.c.declaration_id)
                                  .where(r.c.replaces_id.in_(list(ends)))))
    if replacing:
        starts = {key: start for key, status, start in conn.execute(
            select(d.c.id, d.c.status, d.c.effective_at)
            .where(d.c.id.in_(sorted({new for _, new in replacing}))))
            if status == published}
        found += [(old, starts[new]) for old, new in replacing if new in starts]
    for key, at in found:
        if at is not None:
            ends[key].append(at)
    a = t.declaration_areas
    for key, instants in ends.items():
        at = min(instants) if instants else None
        conn.execute(update(d).where(d.c.id == key).values(ends_at=at))
        conn.execute(update(a).where(a.c.declaration_id == key).values(ends_at=at))


def declaration_exists(conn: Connection, declaration_id: str) -> bool:
    query = select(t.declarations.c.id).where(t.declarations.c.id == declaration_id)
    return conn.execute(query).first() is not None


# --- audit and state -------------------------------------------------------------------------


def audit_entries(conn: Connection) -> Iterable[AuditEntry]:
    """Every audit entry in stored order, streamed."""
    result = conn.execution_options(yield_per=1000).execute(
        select(t.audit_log).order_by(t.audit_log.c.seq))
    for row in result:
        yield _entry(row)


def last_audit_entries(conn: Connection, limit: int) -> list[AuditEntry]:
    """The newest `limit` entries, oldest first."""
    rows = conn.execute(select(t.audit_log).order_by(t.audit_log.c.seq.desc()).limit(limit))
    entries = [_entry(row) for row in rows]
    return entries[::-1]


def last_audit_entry(conn: Connection) -> AuditEntry | None:
    entries = last_audit_entries(conn, 1)
    return entries[0] if entries else None


def insert_audit_entry(conn: Connection, entry: AuditEntry) -> None:
    conn.execute(insert(t.audit_log).values(
        seq=entry.seq, at=entry.at, actor=entry.actor, action=entry.action,
        subject=entry.subject, details=dict(entry.details), prev_hash=entry.prev_hash,
        hash=entry.hash))


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(row.seq, row.at, row.actor, row.action, row.subject, row.details,
                      row.prev_hash, row.hash)


def read_state(conn: Connection) -> Any:
    return conn.execute(select(t.state).where(t.state.c.id == 1)).one()


def among(conn: Connection, column: ColumnElement[Any],
          ids: Iterable[str]) -> ColumnElement[bool]:
    """`column IN ids` with the ids as one bound value, however many: a JSON array read by
    `json_each` on SQLite, an array on PostgreSQL. (An IN list has a parameter per id, which
    SQLAlchemy compiles again on every run, about 10 µs each, and SQLite bounds in number.)
    Both databases then look each id up by the column's index."""
    wanted = list(ids)
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, wanted, type_=ARRAY(Text)))
    values = func.json_each(bindparam(None, json.dumps(wanted), type_=Text)).table_valued("value")
    return column.in_(select(values.c.value))


def _holding_ids(conn: Connection, at: datetime, *, started: bool) -> list[str]:
    """Ids of the published declarations not over by `at` (and, if `started`, begun by
    then), then of every declaration replacing one of them (of any status). Read by two
    index ranges (never ending, ending later), not one OR, which would read every
    published row."""
    d, r = t.declarations, t.declaration_replaces
    begun = [d.c.effective_at <= at] if started else []
    published = d.c.status == Status.PUBLISHED.value
    live = list(conn.execute(union(
        select(d.c.id).where(published, d.c.ends_at.is_(None), *begun),
        select(d.c.id).where(published, d.c.ends_at > at, *begun))).scalars())
    replacing = list(conn.execute(select(r.c.declaration_id)
                                  .where(among(conn, r.c.replaces_id, live))).scalars())
    return list(dict.fromkeys([*live, *replacing]))


def closed_ends_after(conn: Connection, after: datetime, by: datetime) -> set[str]:
    """The area codes named by a published declaration that ended in (after, by]."""
    d, a = t.declarations, t.declaration_areas
    return set(conn.execute(select(a.c.area_code).distinct()
                            .join(d, d.c.id == a.c.declaration_id)
                            .where(d.c.status == Status.PUBLISHED.value, d.c.ends_at > after,
                                   d.c.ends_at <= by)).scalars())


def last_end_by(conn: Connection, by: datetime) -> datetime | None:
    """When the last published declaration over by `by` ended, if any did."""
    d = t.declarations
    found = conn.execute(select(func.max(d.c.ends_at)).where(
        d.c.status == Status.PUBLISHED.value, d.c.ends_at <= by)).scalar()
    return found if isinstance(found, datetime) else None


def published_schemes(conn: Connection) -> list[str]:
    """The keys of the schemes with at least one published declaration (one index probe per
    scheme, not a pass over every declaration)."""
    d = t.declarations
    keys = conn.execute(select(t.schemes.c.key).order_by(t.schemes.c.key)).scalars().all()
    return [key for key in keys if conn.execute(select(d.c.id).where(
        d.c.scheme == key, d.c.status == Status.PUBLISHED.value).limit(1)).first() is not None]


def closed_of(conn: Connection, code: str, by: datetime,
              after: datetime | None = None) -> list[tuple[datetime, str]]:
    """(ends_at, id) of the published declarations naming `code` that were over by `by`
    (and ended after `after`, if given), earliest end first: one range of the area's index
    by end."""
    a = t.declaration_areas
    wanted = [a.c.area_code == code, a.c.ends_at <= by]
    wanted += [a.c.ends_at > after] if after is not None else []
    return [(ends, key) for key, ends in conn.execute(
        select(a.c.declaration_id, a.c.ends_at).where(*wanted)
        .order_by(a.c.ends_at, a.c.declaration_id))]


def closed_spans(conn: Connection, codes: Sequence[str],
                 by: datetime) -> dict[str, tuple[datetime | None, datetime | None]]:
    """`closed_span` of each of `codes`, in one statement (each its own index range)."""
    a = t.declaration_areas
    found: dict[str, tuple[datetime | None, datetime | None]] = dict.fromkeys(
        codes, (None, None))
    for code, first, last in conn.execute(
            select(a.c.area_code, func.min(a.c.ends_at), func.max(a.c.ends_at))
            .where(among(conn, a.c.area_code, codes), a.c.ends_at <= by)
            .group_by(a.c.area_code)):
        found[code] = (first, last)
    return found


def closed_span(conn: Connection, code: str,
                by: datetime) -> tuple[datetime | None, datetime | None]:
    """When the first and the last published declaration naming `code` that were over by
    `by` ended: the two ends of one range of the area's index by end."""
    a = t.declaration_areas
    first, last = conn.execute(select(func.min(a.c.ends_at), func.max(a.c.ends_at))
                               .where(a.c.area_code == code, a.c.ends_at <= by)).one()
    return first, last


def published_ids(conn: Connection) -> list[tuple[str, bool]]:
    """Every published declaration's id and whether it was cancelled, oldest first (by
    creation time, then id)."""
    d, c = t.declarations, t.cancellations
    rows = conn.execute(select(d.c.id, d.c.created_at, c.c.declaration_id)
                        .outerjoin(c, c.c.declaration_id == d.c.id)
                        .where(d.c.status == Status.PUBLISHED.value))
    return [(key, cancelled is not None)
            for key, _, cancelled in sorted(rows, key=lambda row: (row[1], row[0]))]


def published_page(conn: Connection, *, scheme: str | None, codes: Sequence[str] | None,
                   since: datetime | None, until: datetime | None, limit: int | None,
                   offset: int = 0) -> tuple[int, list[str]]:
    """How many published declarations match (of `scheme`, naming any of `codes`, taking
    effect in [since, until), each only if given), and the ids of `limit` of them from
    `offset` on (all when None), newest first by (effective, id)."""
    d, a = t.declarations, t.declaration_areas
    wanted = [d.c.status == Status.PUBLISHED.value]
    wanted += [d.c.scheme == scheme] if scheme is not None else []
    wanted += [d.c.effective_at >= since] if since is not None else []
    wanted += [d.c.effective_at < until] if until is not None else []
    if codes is not None:
        # An area's declarations by the area index, then their rows by primary key.
        named = sorted(set(conn.execute(select(a.c.declaration_id)
                                        .where(a.c.area_code.in_(list(codes)))).scalars()))
        rows = list(conn.execute(select(d.c.id, d.c.effective_at)
                                 .where(among(conn, d.c.id, named), *wanted)))
        rows.sort(key=lambda row: (row[1], row[0]), reverse=True)
        chosen = rows[offset:] if limit is None else rows[offset:offset + limit]
        return len(rows), [row[0] for row in chosen]
    total = int(conn.execute(select(func.count()).select_from(d).where(*wanted)).scalar_one())
    if offset >= total:  # past the end (also an offset too large for the database's integers)
        return total, []
    query = (select(d.c.id).where(*wanted)
             .order_by(d.c.effective_at.desc(), d.c.id.desc()).offset(offset))
    if limit is not None:
        query = query.limit(limit)
    return total, list(conn.execute(query).scalars())


def published_ids_from(conn: Connection, prefix: str, limit: int) -> list[str]:
    """Up to `limit` published ids starting with `prefix`, in id order. Read along the
    primary key from `prefix`, the status tested here (a status test there made SQLite
    read every published row and sort them)."""
    d = t.declarations
    found: list[str] = []
    rows = conn.execute(select(d.c.id, d.c.status).where(d.c.id >= prefix).order_by(d.c.id))
    for key, status in rows:
        if not key.startswith(prefix) or len(found) >= limit:
            break
        if status == Status.PUBLISHED.value:
            found.append(key)
    rows.close()
    return found


def replacing_of(conn: Connection, ids: Sequence[str]) -> dict[str, list[str]]:
    """For each of `ids` that something replaces, the ids of the declarations replacing it
    (of any status: the caller reads the published ones)."""
    r = t.declaration_replaces
    out: dict[str, list[str]] = {}
    for old, new in conn.execute(select(r.c.replaces_id, r.c.declaration_id)
                                 .where(among(conn, r.c.replaces_id, ids))):
        out.setdefault(old, []).append(new)
    return out


def replacing_ids(conn: Connection, declaration_id: str) -> list[str]:
    """The ids of the published declarations replacing `declaration_id`, sorted."""
    d, r = t.declarations, t.declaration_replaces
    # The status is tested here: a status test there made SQLite read every published row.
    return sorted(key for key, status in conn.execute(
        select(r.c.declaration_id, d.c.status).join(d, d.c.id == r.c.declaration_id)
        .where(r.c.replaces_id == declaration_id)) if status == Status.PUBLISHED.value)


STRUCTURE_TOPICS = ("areas.changed", "scheme.changed")
"""Outbox topics of changes to the areas or schemes: every public document may change."""
DECLARATION_TOPICS = ("declaration.published", "declaration.cancelled")


def newest_outbox_id(conn: Connection) -> int:
    """The id of the newest outbox event (0: none): every public change writes one."""
    return int(conn.execute(select(func.max(t.outbox.c.id))).scalar() or 0)


def structure_changed_at(conn: Connection) -> datetime | None:
    """When areas or schemes last changed (the newest such outbox event), if ever."""
    found = conn.execute(select(func.max(t.outbox.c.created_at))
                         .where(t.outbox.c.topic.in_(STRUCTURE_TOPICS))).scalar()
    return found if isinstance(found, datetime) else None


def public_changes_after(conn: Connection, after: int) -> set[str] | None:
    """Ids of the declarations published or cancelled in outbox events after `after`; None
    when areas or schemes changed too (then everything must be read again)."""
    ids: set[str] = set()
    rows = conn.execute(select(t.outbox.c.topic, t.outbox.c.payload)
                        .where(t.outbox.c.id > after).order_by(t.outbox.c.id))
    for topic, payload in rows:
        if topic in STRUCTURE_TOPICS:
            return None
        if topic in DECLARATION_TOPICS and isinstance(payload, dict) and "id" in payload:
            ids.add(str(payload["id"]))
    return ids
