"""Signing wired into publication: CAP alerts signed (XML-DSig) in the publishing
transaction, detached Ed25519 signatures beside every JSON document, feed and CAP file, the
public keys at a well-known path, and no publication at all when a configured key is broken."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import Engine
from tests.helpers import dump, request

from tocsin.cap import xml as capxml
from tocsin.cap.check import check
from tocsin.cap.sign import verify_cap
from tocsin.domain.errors import TocsinError
from tocsin.service import commands, keys
from tocsin.web.snapshot import build


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "keys"
    monkeypatch.setenv("TOCSIN_KEYS_DIR", str(target))
    at = datetime.now(UTC)
    keys.create_document_key(target, now=at)
    keys.create_cap_key(target, subject="CN=Test alerts,O=Test,C=KZ", days=30,
                        algorithm="ecdsa", now=at)
    return target


def test_published_alerts_are_signed_once_and_served_as_signed(engine: Engine,
                                                               folder: Path) -> None:
    [first] = commands.declare(engine, [request("high", ("KZ-75",))], now=datetime.now(UTC),
                               actor="test")
    [second] = commands.declare(engine, [request("moderate", ("KZ-75",),
                                                 replaces=(first.id,))],
                                now=datetime.now(UTC), actor="test")
    commands.cancel(engine, second.id, reason="over", now=datetime.now(UTC), actor="test")
    certificate = keys.active_certificate_pem(folder)
    snapshot = build(engine)
    for path in (f"/cap/{first.id}.xml", f"/cap/{second.id}.xml",
                 f"/cap/{second.id}-cancel.xml"):
        body = snapshot.site.render(path).body
        verdict = verify_cap(body, pinned=[certificate])
        assert verdict.signed and verdict.intact and verdict.trusted, (path, verdict.problem)
        assert [f for f in check(etree.ElementTree(etree.fromstring(body)))
                if f.severity == "error"] == []
        assert capxml.schema().validate(etree.fromstring(body)), path
    # ECDSA signatures differ each time they are made: served bytes come from publication.
    again = build(engine).site.render(f"/cap/{first.id}.xml").body
    assert again == snapshot.site.render(f"/cap/{first.id}.xml").body


def test_every_json_document_feed_and_alert_has_a_detached_signature(engine: Engine,
                                                                     folder: Path) -> None:
    [made] = commands.declare(engine, [request("high", ("KZ-75",))], now=datetime.now(UTC),
                              actor="test")
    site = build(engine).site
    paths = list(site.paths())
    public = json.loads(site.render("/.well-known/tocsin-keys.json").body)
    assert [k["state"] for k in public["keys"]] == ["active"]
    for path in ("/api/v1/levels", f"/api/v1/declarations/{made.id}", "/feeds/alerts.atom",
                 f"/cap/{made.id}.xml", "/openapi.json"):
        assert path + ".sig" in paths
        body = site.render(path).body
        signature = json.loads(site.render(path + ".sig").body)
        assert signature["document"] == path
        assert keys.verify_document(body, signature, public)
        assert not keys.verify_document(body + b" ", signature, public)
    assert "/en/areas/KZ-75.sig" not in paths and "/tocsin.css.sig" not in paths


@pytest.mark.parametrize("breakage", ["missing CAP key", "loose document key"])
def test_a_broken_key_stops_publication_and_writes_nothing(engine: Engine, folder: Path,
                                                           breakage: str) -> None:
    listed = {k.kind.value: k for k in keys.list_keys(folder) if k.state.value == "active"}
    if breakage == "missing CAP key":
        victim = next(p for p in folder.iterdir() if listed["cap"].id in p.name
                      and "key" in p.name)
        victim.unlink()
    else:
        victim = next(p for p in folder.iterdir() if listed["document"].id in p.name)
        victim.chmod(0o644)
    before = dump(engine)
    with pytest.raises(TocsinError):
        commands.declare(engine, [request("high", ("KZ-75",))], now=datetime.now(UTC),
                         actor="test")
    assert dump(engine) == before
