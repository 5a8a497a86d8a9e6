"""`tocsin demo`: the January 2022 replay on a fresh embedded database, shown in the terminal."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from sqlalchemy import Engine

from tocsin import demo
from tocsin.cli import context as ctx
from tocsin.cli.views import status_table
from tocsin.domain.errors import InvalidInput
from tocsin.render.explain import explain
from tocsin.service import queries
from tocsin.store.database import connect


def run_demo(directory: Path | None) -> Engine:
    """Replay into a fresh database and print the story; returns the database's engine."""
    if directory is None:
        folder = Path(tempfile.mkdtemp(prefix="tocsin-demo-"))
    else:
        folder = directory.expanduser().resolve()
        if folder.exists() and any(folder.iterdir()):
            raise InvalidInput(f"folder {folder} is not empty",
                               "give a new or empty folder, or leave out --dir")
        folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'tocsin.sqlite3'}"
    engine = connect(url)
    out = ctx.console
    out.rule("tocsin demo: Kazakhstan, January 2022")
    out.print(demo.DISCLAIMER)
    out.print(f"Fresh embedded SQLite database: {folder / 'tocsin.sqlite3'}")
    result = demo.replay(engine, set_up_at=demo.COUNTRYWIDE_AT)
    out.print(f"Declared {result.countrywide.id}: critical for KZ (countrywide) from "
              "7 January 2022.")
    out.print(f"Replaced it on 13 January, in one change in effect from 14 January, by "
              f"{', '.join(d.id for d in result.step_down)}.")
    world = queries.load_world(engine)
    languages = ["en"]
    for title, at in demo.INSTANTS:
        out.print()
        statuses = world.status(at, scheme=demo.SCHEME)
        out.print(status_table(world.tree, statuses, languages, f"{demo.SCHEME} — {title}"))
    out.print()
    for _, at in demo.INSTANTS[:2]:
        [almaty] = world.status(at, area=demo.ALMATY_CITY, scheme=demo.SCHEME)
        out.print(explain(world.tree, almaty.scheme, almaty.effective, almaty.period, languages))
    verdict = queries.verify_audit(engine)
    out.print()
    out.print(f"Audit chain: {verdict.checked} entries, intact={verdict.ok}, head "
              f"{verdict.head_seq}:{verdict.head_hash[:16]}…")
    out.print()
    program = sys.argv[0] if Path(sys.argv[0]).name == "tocsin" else "tocsin"
    out.print("Explore it yourself:")
    out.print(f"  export TOCSIN_DATABASE_URL={url}")
    out.print(f"  {program} status --at 2022-01-08T12:00+06:00")
    out.print(f"  {program} explain KZ-75 --at 2022-01-15T12:00+06:00 --lang kk")
    out.print(f"  {program} history KZ-75")
    out.print(f"  {program} audit verify")
    out.print("Try the issuing console (/console) with two people for the Almaty region:")
    out.print(f"  {program} users add aigerim --role issuer --area KZ-19")
    out.print(f"  {program} users add nurlan --role approver --area KZ-19")
    out.print("Hear every change of the Almaty region's level (signed webhooks, e-mail, push):")
    out.print(f"  {program} subscriptions add --webhook https://example.org/hook --area KZ-75")
    out.print(f"  {program} deliveries watch")
    if os.environ.get("TOCSIN_DATABASE_URL"):
        out.print("(the demo used its own database, not TOCSIN_DATABASE_URL)")
    return engine
