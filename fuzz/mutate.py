"""Fast input makers for the fuzz: byte-level mutation of seeds, and structure-aware mutation
that parses a seed (XML, TOML, CSV, JSON, a query string), changes its tree and writes it out
again, so that inputs get past the syntax and into each parser's rules. Plain `random`, seeded:
a run is repeatable, and making an input costs microseconds, where Hypothesis costs a
millisecond (see fuzz/run.py, which uses both)."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
import tomllib
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, quote

from lxml import etree

TEXTS = [
    "", " ", "\t", "\n", "\x00", "\x7f", "\x85", "\u2028", "\u202e", "\ufeff", "\ufffe",
    "\ud800", "\udfff", "\U0001f6a8", "é", "Ā" * 3, "A" * 300, "A" * 70_000, "KZ", "KZ-75",
    "KZ-99", "kz-terror", "meteoalarm", "critical", "high", "moderate", "yellow", "en", "kk",
    "ru", "en-GB", "x-" + "a" * 70, "2022-01-07T00:00:00+06:00", "2022-01-07T00:00Z",
    "2022-01-07", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-14:00",
    "1000-01-01T00:00+23:59", "8999-12-31T23:59:59.999999999-23:59", "2022-02-30T00:00Z",
    "P1D", "PT1H", "P99999999999999D", "P-1D", "PT0S", "-1", "0", "00", "9" * 30, "9" * 5000,
    "1e999", "NaN", "Infinity", "true", "null", "#FF0000", "#ff00zz", "Extreme", "Unknown",
    "Security", "Immediate", "Observed", "issuer", "approver", "admin", "declare", "approve",
    "*@zamg.ac.at", "*", "geocode:EMMA_ID", "geocode:", "parameter:x", "event_code:x",
    "awareness_level", "severity", "fixed", "pinned", "any", "signer.pem", "/dev/null",
    "/etc/passwd", "../../etc/passwd", ".", "a\x00b", "Asia/Almaty", "UTC", "Europe/../UTC",
    "../zone", "kz-terror/critical", "/", "//", "https://hooks.example.kz/x",
    "http://127.0.0.1/", "javascript:alert(1)", "https://[::1", "&amp;", "<![CDATA[x]]>",
    "<!--x-->", "%00", "%ff", "%u0000", "%", "+", "a=b&c", "\r\n", "1,2 3", "43.1,76.8 43.4",
    "-90,-180 90,180 -90,-180", "0,0 0", "1.2.3.4,5",
]
NUMBERS: list[Any] = [0, 1, -1, 2, 99, 100, 255, 256, 2**31, 2**63, -(2**63), 2**64, 10**400,
                      0.0, -0.0, 0.5, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan,
                      90, 180, -180, 180.0000001]
TOKENS = [t.encode("utf-8", "surrogatepass") for t in TEXTS[:70]] + [
    b'"', b"'", b"[", b"]", b"{", b"}", b"=", b",", b";", b":", b"\\", b"\n", b"\r", b"<", b">",
    b"&", b"/", b"?", b"%", b"\\u0000", b"\\ud800", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00",
    b"[[", b"]]", b"<?xml", b"<!DOCTYPE a [<!ENTITY x 'y'>]>", b"&x;", b"xmlns=", b"\xef\xbb\xbf",
    b"[" * 40, b"{" * 40, b"[" * 5000, b'{"a":' * 3000,
]


def value(rng: random.Random, toml: bool = False) -> Any:
    """An interesting value for a tree: text, number, truth, container, (TOML) a time."""
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(TEXTS)
    if roll < 0.7:
        return rng.choice(NUMBERS)
    if roll < 0.75:
        return rng.random() < 0.5
    if roll < 0.8:
        return None if not toml else ""
    if roll < 0.9:
        return [value(rng, toml) for _ in range(rng.randrange(4))]
    if toml and roll < 0.95:
        return rng.choice([datetime(2022, 1, 7, 9, 0), date(2022, 1, 7), time(9, 30),
                           datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=14))),
                           datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=-14)))])
    return {rng.choice(TEXTS[:40]): value(rng, toml) for _ in range(rng.randrange(3))}


def _nodes(tree: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """(container, key) for every place in a JSON-like tree."""
    if isinstance(tree, dict):
        for key in list(tree):
            out.append((tree, key))
            _nodes(tree[key], out)
    elif isinstance(tree, list):
        for index in range(len(tree)):
            out.append((tree, index))
            _nodes(tree[index], out)
    return out


def mutate_tree(tree: Any, rng: random.Random, toml: bool = False) -> Any:
    """Change one to three places of a JSON-like tree: a new value, a removed or added key,
    a duplicated list item, a renamed key."""
    for _ in range(rng.randint(1, 3)):
        places = _nodes(tree, [])
        if not places:
            return value(rng, toml)
        container, key = rng.choice(places)
        roll = rng.random()
        if roll < 0.5:
            container[key] = value(rng, toml)
        elif roll < 0.65:
            del container[key]
        elif roll < 0.8 and isinstance(container, list):
            container.insert(key, container[key])
        elif isinstance(container, dict):
            if roll < 0.9:
                container[rng.choice(TEXTS[:40])] = value(rng, toml)
            else:
                container[rng.choice(TEXTS[:40])] = container.pop(key)
    return tree


_SURROGATE = re.compile("[\ud800-\udfff]")


def _toml_string(text: str) -> str:
    """A TOML basic string, which takes JSON's escapes; a lone surrogate as one (\\ud800),
    which TOML refuses, rather than as bytes that are not UTF-8 at all."""
    quoted = json.dumps(text, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def toml_value(item: Any) -> str:
    """One TOML value, inline; tables become inline tables."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, float):
        return "nan" if math.isnan(item) else "inf" if item == math.inf else (
            "-inf" if item == -math.inf else repr(item))
    if isinstance(item, int):
        return str(item)
    if isinstance(item, datetime | date | time):
        return item.isoformat()
    if isinstance(item, list):
        return "[" + ", ".join(toml_value(v) for v in item) + "]"
    if isinstance(item, dict):
        return "{" + ", ".join(f"{_toml_string(str(k))} = {toml_value(v)}"
                               for k, v in item.items()) + "}"
    return _toml_string("" if item is None else str(item))


def dump_toml(tree: Any) -> str:
    if not isinstance(tree, dict):
        return f"x = {toml_value(tree)}\n"
    return "".join(f"{_toml_string(str(k))} = {toml_value(v)}\n" for k, v in tree.items())


def _json(seed: bytes, rng: random.Random) -> bytes:
    tree = mutate_tree(json.loads(seed), rng)
    return json.dumps(tree, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def _toml(seed: bytes, rng: random.Random) -> bytes:
    tree = mutate_tree(tomllib.loads(seed.decode()), rng, toml=True)
    return dump_toml(tree).encode("utf-8", "surrogatepass")


def _csv(seed: bytes, rng: random.Random) -> bytes:
    rows = list(csv.reader(io.StringIO(seed.decode("utf-8-sig"))))
    for _ in range(rng.randint(1, 3)):
        row = rng.choice(rows)
        roll = rng.random()
        if roll < 0.6 and row:
            row[rng.randrange(len(row))] = rng.choice(TEXTS)
        elif roll < 0.7:
            row.append(rng.choice(["name:" + rng.choice(TEXTS[:40]), "geocode:x", "grid_row",
                                   "timezone", rng.choice(TEXTS)]))
        elif roll < 0.8 and row:
            del row[rng.randrange(len(row))]
        elif roll < 0.9:
            rows.insert(rng.randrange(len(rows) + 1), list(row))
        else:
            rows.remove(row)
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


def _xml(seed: bytes, rng: random.Random) -> bytes:
    root = etree.fromstring(seed, etree.XMLParser(resolve_entities=False, no_network=True))
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    for _ in range(rng.randint(1, 3)):
        element = rng.choice(elements)
        roll = rng.random()
        try:
            if roll < 0.5:
                element.text = rng.choice(TEXTS)
            elif roll < 0.65 and element.getparent() is not None:
                element.getparent().remove(element)
                elements = [e for e in root.iter() if isinstance(e.tag, str)]
            elif roll < 0.8 and element.getparent() is not None:
                element.addnext(etree.fromstring(etree.tostring(element)))
            elif roll < 0.9:
                element.tag = rng.choice(elements).tag
            else:
                element.set(rng.choice(["lang", "xml:lang", "id", "{urn:x}a"]), rng.choice(TEXTS))
        except (ValueError, TypeError):  # lxml refuses text it cannot hold: keep the tree
            pass
    return bytes(etree.tostring(root, encoding="utf-8", xml_declaration=rng.random() < 0.5))


NAMES = ["at", "scheme", "level", "area", "changed_since", "cursor", "limit", "since", "until",
         "offset", "owner", "status", "q", "from", "to", "lang", "csrf", "step", "areas",
         "zone", "effective", "expires", "replaces", "sender", "text-en-headline",
         "text-kk-description", "text--headline", "text-en-", "roles", "scopes", "revision",
         "reason", "break_glass_reason", "name", "password"]


def _query(seed: bytes, rng: random.Random) -> bytes:
    pairs = parse_qsl(seed.decode("latin-1"), keep_blank_values=True)
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.5 and pairs:
            index = rng.randrange(len(pairs))
            pairs[index] = (pairs[index][0], rng.choice(TEXTS))
        elif roll < 0.7:
            pairs.insert(rng.randrange(len(pairs) + 1), (rng.choice(NAMES), rng.choice(TEXTS)))
        elif roll < 0.85 and pairs:
            del pairs[rng.randrange(len(pairs))]
        elif pairs:
            pairs.append(rng.choice(pairs))
    raw = rng.random() < 0.2
    return "&".join(f"{k}={v}" if raw else f"{quote(k, safe='', errors='surrogatepass')}="
                    f"{quote(v, safe='', errors='surrogatepass')}"
                    for k, v in pairs).encode("utf-8", "surrogatepass")


def _target(seed: bytes, rng: random.Random) -> bytes:
    path, _sep, query = seed.partition(b"?")
    if rng.random() < 0.3:
        path = b"/" + b"/".join(quote(rng.choice(TEXTS), errors="surrogatepass").encode()
                                for _ in range(rng.randint(1, 4)))
    return path + b"?" + _query(query, rng)


STRUCTURE: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "xml": _xml, "toml": _toml, "csv": _csv, "json": _json, "query": _query,
    "target": _target,
}


def mutate_bytes(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """One to eight byte-level changes: flips, insertions of tokens, deletions, repeats,
    splices with another seed, truncation."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 4, 8))):
        roll = rng.random()
        at = rng.randrange(len(out) + 1)
        if roll < 0.2 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif roll < 0.3 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif roll < 0.55:
            out[at:at] = rng.choice(TOKENS)
        elif roll < 0.7:
            del out[at:at + rng.choice((1, 2, 4, 16, 256))]
        elif roll < 0.8:
            end = min(len(out), at + rng.choice((1, 8, 64, 512)))
            out[at:at] = out[at:end] * rng.choice((1, 2, 16))
        elif roll < 0.9:
            other = rng.choice(others)
            start = rng.randrange(len(other) + 1)
            out[at:] = other[start:]
        else:
            del out[at:]
    return bytes(out)


def random_bytes(rng: random.Random) -> bytes:
    """Noise: random bytes, or random picks from the tokens."""
    if rng.random() < 0.5:
        return rng.randbytes(rng.choice((0, 1, 4, 16, 64, 512)))
    return b"".join(rng.choice(TOKENS) for _ in range(rng.randrange(12)))


def make(structure: str, seeds: list[bytes], rng: random.Random) -> bytes:
    """One input: 45 % structure-aware, 45 % byte-level mutation of a seed, 10 % noise."""
    roll = rng.random()
    seed = rng.choice(seeds)
    if roll < 0.45:
        try:
            data = STRUCTURE[structure](seed, rng)
        except Exception:
            data = seed
        return mutate_bytes(data, rng, seeds) if rng.random() < 0.2 else data
    if roll < 0.9:
        return mutate_bytes(seed, rng, seeds)
    return random_bytes(rng)
