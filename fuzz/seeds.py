"""Valid inputs for each target, for the fuzz to mutate: the files that ship with tocsin, small
documents written here, real CAP alerts from the shared corpus when it sits beside the
repository, and every kept case in tests/fuzz_cases/TARGET/."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from tests.fuzz_targets import cases

from tocsin.demo import kazakhstan_areas_file

SCHEMES = Path(str(files("tocsin") / "data" / "schemes"))
CORPUS_CAP = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "cap" / "valid"

CAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>KZ-2022-0107-1</identifier>
  <sender>alerts@example.kz</sender>
  <sent>2022-01-07T09:00:00+06:00</sent>
  <status>Actual</status>
  <msgType>Update</msgType>
  <scope>Public</scope>
  <references>alerts@example.kz,KZ-2022-0106-1,2022-01-06T09:00:00+06:00</references>
  <info>
    <language>en</language>
    <category>Security</category>
    <event>Terrorism threat</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <effective>2022-01-07T09:00:00+06:00</effective>
    <expires>2022-01-20T09:00:00+06:00</expires>
    <headline>Critical terrorism threat level</headline>
    <parameter><valueName>awareness_level</valueName><value>4; red; Extreme</value></parameter>
    <area>
      <areaDesc>Almaty</areaDesc>
      <polygon>43.1,76.8 43.4,76.8 43.4,77.1 43.1,77.1 43.1,76.8</polygon>
      <circle>43.25,76.95 10</circle>
      <geocode><valueName>ISO3166-2</valueName><value>KZ-75</value></geocode>
    </area>
  </info>
</alert>
"""

GEOJSON = json.dumps({"type": "FeatureCollection", "features": [
    {"type": "Feature",
     "properties": {"code": "KZ-75", "parent": "KZ", "kind": "city", "timezone": "Asia/Almaty",
                    "name:en": "Almaty", "name:kk": "Алматы", "ADM1_PCODE": "KZ75",
                    "ADM1_EN": "Almaty", "grid_row": 3, "grid_col": 4},
     "geometry": {"type": "Polygon", "coordinates": [
         [[76.8, 43.1], [77.1, 43.1], [77.1, 43.4], [76.8, 43.4], [76.8, 43.1]]]}},
    {"type": "Feature",
     "properties": {"code": "KZ-71", "name:en": "Astana", "ADM1_PCODE": "KZ71",
                    "ADM1_EN": "Astana"},
     "geometry": {"type": "MultiPolygon", "coordinates": [
         [[[71.2, 51.0], [71.6, 51.0], [71.6, 51.3], [71.2, 51.0]]],
         [[[70.0, 50.0], [70.5, 50.5], [70.0, 50.5], [70.5, 50.0], [70.0, 50.0]]]]}},
    {"type": "Feature", "properties": {"code": "KZ-79", "name:ru": "Шымкент"},
     "geometry": None},
]}, ensure_ascii=False).encode()

CHANGE_TOML = """\
[[declaration]]
scheme = "kz-terror"
level = "critical"
areas = ["KZ-75", "KZ-19"]
effective = 2022-01-14T00:00:00+06:00
expires = "2022-01-28T00:00:00+06:00"
replaces = ["20220107-3fa9c2d1"]
sender = "kz.knb"
[declaration.texts.en]
headline = "Critical level in Almaty"
description = "Why"
measures = "What"
instructions = "Do"
[declaration.texts.kk]
headline = "Алматыда қатерлі деңгей"

[[declaration]]
scheme = "kz-terror"
level = "moderate"
areas = ["KZ-11"]
[declaration.texts.ru]
headline = "Умеренный"
""".encode()

CHANGE_JSON = json.dumps({"declaration": [
    {"scheme": "kz-terror", "level": "high", "areas": ["KZ-71"],
     "effective": "2022-01-14T00:00:00+06:00", "expires": "2022-01-28T00:00:00+06:00",
     "replaces": ["20220107-3fa9c2d1"], "texts": {"en": {"headline": "High in Astana"}}},
]}).encode()

SOURCES = b"""\
[[source]]
name = "geosphere-austria"
senders = ["*@zamg.ac.at", "warn@example.at"]
scheme = "meteoalarm"
map = "awareness_level"
areas = "geocode:EMMA_ID"
require_signature = true
trust = "pinned"
certificates = ["signer.pem"]
[source.levels]
"2; yellow; Moderate" = "yellow"
"3; orange; Severe" = "orange"

[[source]]
name = "kz"
senders = ["alerts@example.kz"]
scheme = "kz-terror"
map = "parameter:level"
areas = "fixed"
fixed_areas = ["KZ"]
[source.levels]
red = "critical"
"""

BODIES = [json.dumps(body).encode() for body in (
    {"scheme": "kz-terror", "level": "critical", "areas": ["KZ-75"], "submit": False,
     "texts": {"en": {"headline": "Critical", "description": "d"}},
     "effective": "2022-01-14T00:00:00+06:00", "expires": "2022-01-28T00:00:00+06:00",
     "break_glass": "the minister is away"},
    {"revision": 3}, {"reason": "The threat has passed", "break_glass": ""},
    {"name": "aigerim", "password": "a long enough password", "roles": ["issuer", "approver"],
     "areas": ["KZ-75"], "break_glass": False, "email": "a@example.kz"},
    {"roles": ["viewer"], "disabled": True, "email": ""},
    {"token": "reset_abc", "password": "a long enough password"},
    {"user": "aigerim", "scopes": ["declare", "approve"], "label": "ci", "expires": "P30D"},
    {"webhook": "https://hooks.example.kz/tocsin", "areas": ["KZ-75"], "schemes": ["kz-terror"],
     "language": "ru"},
    {"endpoint": "https://push.example.com/send/abc", "expirationTime": None,
     "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1"
                        "XbjhazAkj7I99e8QcYP7DkM",
              "auth": "tBHItJI5svbpez7KI4CCXg"},
     "areas": ["KZ"]},
)]

QUERIES = [b"at=2022-01-08T12:00%2B06:00&scheme=kz-terror&level=critical&area=KZ-75&limit=50",
           b"changed_since=2022-01-07T00:00Z&cursor=KZ-19&limit=500",
           b"since=2022-01-01T00:00:00Z&until=2022-02-01T00:00:00+06:00&offset=0&limit=1",
           b"owner=someone&status=failed&q=Almaty&from=2022-01-01&to=2022-01-31",
           b"at=2022-01-15T12:00+06:00&lang=kk"]

PATHS = ["/", "/ru/", "/en/areas/KZ-75", "/history", "/kk/history", "/search",
         "/api/v1/levels", "/api/v1/areas/KZ-75", "/api/v1/declarations", "/api/v1/history",
         "/api/v1/schemes", "/api/v1/audit/head", "/map/kz-terror.svg",
         "/badge/kz-terror/KZ-75.svg", "/feeds/levels.atom", "/en/declarations/x"]

FORMS = [b"csrf=x&step=preview&level=kz-terror%2Fhigh&areas=KZ-71&areas=KZ-79"
         b"&zone=Asia%2FAlmaty&effective=2022-01-14T00%3A00&expires=2022-01-28T00%3A00"
         b"&replaces=&sender=kz.knb&text-en-headline=High&text-kk-headline=%D0%96"
         b"&text-en-description=d&roles=issuer&roles=approver&scopes=declare&expires=P30D"
         b"&revision=2&reason=over",
         b"level=kz-terror%2Fcritical&areas=KZ&text-ru-headline=x&zone=UTC"
         b"&effective=2022-01-15T10:00:00%2B06:00"]


def seeds(target: str) -> list[bytes]:
    """The inputs the fuzz starts from for `target`: valid ones, and its kept cases."""
    found = {
        "cap-xml": [CAP, *(p.read_bytes() for p in sorted(CORPUS_CAP.glob("*.xml")))],
        "scheme-toml": [p.read_bytes() for p in sorted(SCHEMES.glob("*.toml"))],
        "areas-csv": [kazakhstan_areas_file().read_bytes(),
                      b"code,parent,kind,name:en,geocode:EMMA_ID\nKZ,,country,Kazakhstan,\n"
                      b"KZ-75,KZ,city,\"Almaty, \"\"the city\"\"\",KZ075\n"],
        "areas-geojson": [GEOJSON],
        "change-toml": [CHANGE_TOML],
        "change-json": [CHANGE_JSON],
        "sources-toml": [SOURCES],
        "api-query": QUERIES,
        "api-public": [f"{path}?{query.decode()}".encode() for path in PATHS
                       for query in QUERIES[:2]] + [p.encode() for p in PATHS],
        "api-body": BODIES,
        "console-form": FORMS,
    }[target]
    kept = [path.read_bytes() for path in cases(target)]
    # Nine in ten picks start from a valid document: the kept cases are mostly refusals.
    return found * max(1, 9 * len(kept) // len(found)) + kept
