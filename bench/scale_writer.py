"""The burst of regional changes of bench/scale.py, as one process: `--count` declarations
through the service layer (`commands.declare`, the CLI's own path minus its start-up), one
after another as fast as they commit, over the given regions in turn; each replaces the
previous one on its region (`--replace AREA=ID:LEVEL` names the one in force before the
burst) and alternates high and moderate, so every one changes a level.

Prints `ready` once connected, waits for a line on standard input, then prints one JSON line
per change and `done`. With `--paced`, it makes one change per line read instead (until end of
input), so that the latency samples time a commit, not a command's start-up and exit. Run by
bench/scale.py; not meant to be run by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from tocsin.ingest.declarations import parse_declaration
from tocsin.ingest.document import Document
from tocsin.service import commands
from tocsin.store.database import connect

SCHEME = "kz-terror"


def texts(token: str, region: str) -> dict[str, dict[str, str]]:
    return {"kk": {"headline": f"{region}: террористік қауіп деңгейі өзгерді ({token})"},
            "ru": {"headline": f"{region}: изменён уровень террористической опасности ({token})"},
            "en": {"headline": f"{region}: terrorism threat level changed ({token})"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--areas", required=True, help="comma-separated region codes")
    parser.add_argument("--token", required=True, help="marks the headlines of this burst")
    parser.add_argument("--replace", action="append", default=[],
                        help="AREA=ID:LEVEL, the declaration in force on AREA (repeat)")
    parser.add_argument("--paced", action="store_true",
                        help="one change per line of standard input, until its end")
    args = parser.parse_args()
    areas = args.areas.split(",")
    previous: dict[str, str] = {}
    current: dict[str, str] = {}
    for given in args.replace:
        area, _, rest = given.partition("=")
        previous[area], _, current[area] = rest.partition(":")
    engine = connect(args.database_url)
    print("ready", flush=True)
    if not args.paced:
        sys.stdin.readline()
    for i in range(args.count):
        if args.paced and not sys.stdin.readline():
            break
        area = areas[i % len(areas)]
        level = "moderate" if current.get(area) == "high" else "high"
        body: dict[str, object] = {"scheme": SCHEME, "level": level, "areas": [area],
                                   "texts": texts(f"{args.token}-{i:03d}", area)}
        if area in previous:
            body["replaces"] = [previous[area]]
        request = parse_declaration(Document(body, "bench burst"), default_sender="bench")
        began = time.monotonic()
        [made] = commands.declare(engine, [request], now=datetime.now(UTC),
                                  actor="local-operator:bench-scale")
        previous[area], current[area] = made.id, level
        print(json.dumps({"i": i, "id": made.id, "area": area, "level": level,
                          "seconds": round(time.monotonic() - began, 4)}), flush=True)
    print("done", flush=True)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
