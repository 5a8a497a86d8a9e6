"""The generated databases of bench/scale.py: a Kazakhstan-shaped tree of areas and a long,
closed history of declarations, cached under bench/.cache/ by size and generator version.

The tree is Kazakhstan (KZ) and its 20 ISO 3166-2 regions and cities, exactly as the demo
loads them (src/tocsin/data/areas/kz.csv), then districts under each region and localities
under each district, codes like KZ-75-D012-L0007, each named in Kazakh, Russian and
English. It goes in through the real CLI (`tocsin init`, `tocsin areas import FILE`).

The history does not: a million declarations through `tocsin declare` would take days. They
are written straight into the tables a published declaration fills (see
src/tocsin/store/records.py `insert_declaration`): `declarations`, `declaration_areas`,
`declaration_replaces` and `cancellations`, with SQLAlchemy bulk inserts. They have no audit
entries, no outbox events and no stored CAP messages (`cap_documents`): the server renders
the CAP message of such a declaration on demand, and `tocsin audit verify` still verifies
(the chain covers what was audited) but does not vouch for this history. That is acceptable
for a benchmark database and nowhere else. One real `tocsin declare` follows, so that the
state row, the audit chain, the announced levels, the schedule and the outbox are those of
a store that has seen a change.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

from sqlalchemy import Connection, insert

from tocsin.store import tables as t
from tocsin.store.database import connect

GENERATOR_VERSION = 1
"""Bump when the generated data changes: cached databases of other versions are not used."""
CACHE = Path(__file__).resolve().parent / ".cache"
SCHEME = "kz-terror"
LEVELS = (("moderate", 6), ("high", 3), ("critical", 1))
HISTORY_FROM = datetime(2012, 1, 1, tzinfo=UTC)
HISTORY_TO = datetime(2025, 1, 1, tzinfo=UTC)
"""Every generated declaration took effect, and ended, between these instants."""
SENDER = "Kazakhstan counter-terrorism authorities (benchmark history)"
ACTOR = "bench-history"
CHUNK = 20_000
LIVE_AREA = "KZ-11"
"""The one real declaration at the end: moderate on Akmola region, in effect from then on."""


# --- the tree ---------------------------------------------------------------------------------

FIRST = ("Ақ", "Қара", "Сары", "Көк", "Жаңа", "Ескі", "Бай", "Тас", "Құм", "Шығыс", "Батыс",
         "Орта", "Үлкен", "Кіші", "Алтын", "Күміс", "Талды", "Қайың", "Терек", "Арал", "Жел",
         "Ой", "Бес", "Үш")
SECOND = ("су", "бұлақ", "көл", "тау", "тоғай", "өзек", "жар", "төбе", "қайнар", "сай", "бел",
          "шоқы", "дала", "қала", "арық", "құдық", "кент", "ағаш", "қорған", "адыр", "өткел",
          "қопа")
LATIN = {"а": "a", "ә": "a", "б": "b", "в": "v", "г": "g", "ғ": "gh", "д": "d", "е": "e",
         "ё": "yo", "ж": "zh", "з": "z", "и": "i", "й": "y", "к": "k", "қ": "q", "л": "l",
         "м": "m", "н": "n", "ң": "ng", "о": "o", "ө": "o", "п": "p", "р": "r", "с": "s",
         "т": "t", "у": "u", "ұ": "u", "ү": "u", "ф": "f", "х": "kh", "һ": "h", "ц": "ts",
         "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "і": "i", "ь": "", "э": "e",
         "ю": "yu", "я": "ya"}
RUSSIAN = str.maketrans("әғқңөұүһіӘҒҚҢӨҰҮҺІ", "агкноуухиАГКНОУУХИ")


def latin(kazakh: str) -> str:
    text = "".join(LATIN.get(ch, ch) for ch in kazakh.lower())
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class TreeShape:
    """Districts per region and localities per district for a total of about `target`."""

    target: int
    regions: int
    districts: int
    localities: int

    @property
    def total(self) -> int:
        return 1 + self.regions * (1 + self.districts * (1 + self.localities))

    @classmethod
    def for_total(cls, target: int, regions: int) -> TreeShape:
        rest = max(0, target - 1 - regions)
        districts = max(1, round((rest / regions) ** 0.5))
        localities = max(0, round((rest - regions * districts) / (regions * districts)))
        return cls(target, regions, districts, localities)


def kazakhstan_rows() -> list[dict[str, str]]:
    """The demo's areas: KZ and its 20 regions and cities, as the CSV rows it ships."""
    text = (files("tocsin") / "data" / "areas" / "kz.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def tree_rows(target: int, rng: random.Random) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of the area CSV: country, regions, districts, localities."""
    base = kazakhstan_rows()
    header = list(base[0].keys())
    regions = [row for row in base if row["parent"] == "KZ"]
    shape = TreeShape.for_total(target, len(regions))
    rows = list(base)
    for region in regions:
        for j in range(1, shape.districts + 1):
            name = rng.choice(FIRST) + rng.choice(SECOND)
            district = f"{region['code']}-D{j:03d}"
            rows.append(_row(header, district, region["code"], "district", region["timezone"],
                             f"{name} ауданы", f"{name.translate(RUSSIAN)} район",
                             f"{latin(name)} District"))
            for k in range(1, shape.localities + 1):
                name = rng.choice(FIRST) + rng.choice(SECOND)
                # 'custom': tocsin has no kind for a village or town below a district.
                rows.append(_row(header, f"{district}-L{k:04d}", district, "custom",
                                 region["timezone"], f"{name} ауылы",
                                 f"село {name.translate(RUSSIAN)}", latin(name)))
    assert len(rows) == shape.total
    return header, rows


def _row(header: list[str], code: str, parent: str, kind: str, timezone: str, kk: str,
         ru: str, en: str) -> dict[str, str]:
    row = dict.fromkeys(header, "")
    row.update({"code": code, "parent": parent, "kind": kind, "timezone": timezone,
                "name:kk": kk, "name:ru": ru, "name:en": en})
    return row


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


# --- the history ------------------------------------------------------------------------------

LEVEL_NAMES = {
    "moderate": ("орташа («сары»)", "умеренный («жёлтый»)", "moderate (yellow)"),
    "high": ("жоғары («қызғылт сары»)", "высокий («оранжевый»)", "high (orange)"),
    "critical": ("қатерлі («қызыл»)", "критический («красный»)", "critical (red)"),
}


def _texts(level: str, names: dict[str, str]) -> dict[str, dict[str, str]]:
    kk, ru, en = LEVEL_NAMES[level]
    return {
        "kk": {"headline": f"{names['kk']}: террористік қауіптің {kk} деңгейі",
               "description": "Облыстық жедел штабтың шешімі.", "measures": "",
               "instructions": ""},
        "ru": {"headline": f"{names['ru']}: {ru} уровень террористической опасности",
               "description": "Решение областного оперативного штаба.", "measures": "",
               "instructions": ""},
        "en": {"headline": f"{names['en']}: {en} terrorism threat level",
               "description": "Decided by the regional operational headquarters.",
               "measures": "", "instructions": ""},
    }


@dataclass(frozen=True)
class Planned:
    id: str
    level: str
    areas: tuple[str, ...]
    effective: datetime
    expires: datetime
    published: datetime
    replaces: str | None
    cancelled: datetime | None
    ends: datetime
    """When it stops holding: expiry, cancellation or replacement (the store's `ends_at`)."""


def plan_history(count: int, rows: Sequence[dict[str, str]], rng: random.Random
                 ) -> Iterator[Planned]:
    """`count` closed declarations: a third on regions, a third on districts, the rest on
    localities (a few countrywide); one in ten replaced by a later one on the same areas,
    one in twenty cancelled early; every term over before HISTORY_TO."""
    by_depth: dict[int, list[str]] = {1: [], 2: [], 3: []}
    for row in rows:
        if row["parent"]:
            by_depth[row["code"].count("-")].append(row["code"])
    levels = [k for k, _ in LEVELS]
    weights = [w for _, w in LEVELS]
    span = int((HISTORY_TO - HISTORY_FROM).total_seconds()) - 40 * 86_400
    made = 0
    while made < count:
        roll = rng.random()
        if roll < 0.001:
            areas: tuple[str, ...] = ("KZ",)
        else:
            depth = 1 if roll < 0.33 else 2 if roll < 0.66 else 3
            pool = by_depth[depth] or by_depth[1]
            areas = tuple(rng.sample(pool, min(len(pool), rng.choice((1, 1, 1, 1, 2, 3)))))
        effective = HISTORY_FROM + timedelta(seconds=rng.randrange(span))
        expires = effective + timedelta(seconds=rng.randint(3_600, 14 * 86_400))
        published = effective - timedelta(seconds=rng.randint(0, 7_200))
        first = Planned(f"{effective:%Y%m%d}-{made:08x}", rng.choices(levels, weights)[0],
                        areas, effective, expires, published, None, None, expires)
        made += 1
        if made < count and rng.random() < 0.1:
            # Replaced part-way through its term by a declaration on the same areas.
            taking_over = effective + (expires - effective) / 2
            later = taking_over + timedelta(seconds=rng.randint(3_600, 7 * 86_400))
            yield Planned(first.id, first.level, first.areas, first.effective, first.expires,
                          first.published, None, None, taking_over)
            yield Planned(f"{taking_over:%Y%m%d}-{made:08x}", rng.choices(levels, weights)[0],
                          areas, taking_over, later, taking_over, first.id, None, later)
            made += 1
            continue
        if rng.random() < 0.05:
            cut = effective + (expires - effective) * rng.uniform(0.1, 0.9)
            first = Planned(first.id, first.level, first.areas, first.effective, first.expires,
                            first.published, None, cut, cut)
        yield first


def insert_history(database_url: str, count: int, rows: Sequence[dict[str, str]],
                   rng: random.Random) -> None:
    """Bulk-insert the planned history through SQLAlchemy Core, CHUNK rows at a time."""
    names = {row["code"]: {lang: row[f"name:{lang}"] for lang in ("kk", "ru", "en")}
             for row in rows}
    engine = connect(database_url)
    batch: list[Planned] = []

    def flush(conn: Connection) -> None:
        declarations, links, replaces, cancels = [], [], [], []
        for p in batch:
            first_area = names[p.areas[0]]
            label = dict(first_area)
            if len(p.areas) > 1:
                label = {lang: f"{n} +{len(p.areas) - 1}" for lang, n in first_area.items()}
            declarations.append({
                "id": p.id, "scheme": SCHEME, "level": p.level, "status": "published",
                "effective_at": p.effective, "expires_at": p.expires,
                "texts": _texts(p.level, label), "sender": SENDER,
                "created_at": p.published, "created_by": ACTOR, "published_at": p.published,
                "published_by": ACTOR, "revision": 1, "submitted_at": None,
                "break_glass": None, "cap_sender": "tocsin", "ends_at": p.ends})
            links += [{"declaration_id": p.id, "area_code": code, "position": i,
                       "ends_at": p.ends} for i, code in enumerate(p.areas)]
            if p.replaces is not None:
                replaces.append({"declaration_id": p.id, "replaces_id": p.replaces,
                                 "position": 0})
            if p.cancelled is not None:
                cancels.append({"declaration_id": p.id, "at": p.cancelled,
                                "reason": "The threat has passed", "actor": ACTOR})
        conn.execute(insert(t.declarations), declarations)
        conn.execute(insert(t.declaration_areas), links)
        if replaces:
            conn.execute(insert(t.declaration_replaces), replaces)
        if cancels:
            conn.execute(insert(t.cancellations), cancels)
        batch.clear()

    try:
        with engine.begin() as conn:
            for planned in plan_history(count, rows, rng):
                batch.append(planned)
                if len(batch) >= CHUNK:
                    flush(conn)
            if batch:
                flush(conn)
    finally:
        engine.dispose()


# --- the cached database ----------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    path: Path
    areas: int
    history: int
    seconds: float
    """How long generating it took (when it was generated)."""
    cached: bool
    steps: dict[str, float]


def cache_path(areas: int, history: int) -> Path:
    return CACHE / f"scale-g{GENERATOR_VERSION}-a{areas}-h{history}.sqlite3"


Run = Callable[[list[str], str, str, float], None]
"""Runs a tocsin command (arguments, database URL, what it is, timeout); raises on failure."""
Log = Callable[[str], None]


def database(areas: int, history: int, *, run: Run, log: Log) -> Generated:
    """The cached database for this size, generated first (through `run`) when missing."""
    path = cache_path(areas, history)
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text(encoding="utf-8"))
        # Generated by an earlier tocsin: bring it to this one's migration (kept, once).
        run(["init"], f"sqlite:///{path}", "tocsin init (upgrade the cached database)", 3600)
        return Generated(path, info["areas"], info["history"], info["seconds"], True,
                         info.get("steps", {}))
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f".generating-{path.stem}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        generated = _generate(work, areas, history, run, log)
        shutil.move(str(work / "tocsin.sqlite3"), path)
        meta.write_text(json.dumps({
            "areas": generated.areas, "history": generated.history,
            "seconds": round(generated.seconds, 1), "steps": generated.steps,
            "generator": GENERATOR_VERSION,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2) + "\n",
            encoding="utf-8")
        return Generated(path, generated.areas, generated.history, generated.seconds, False,
                         generated.steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _generate(work: Path, areas: int, history: int, run: Run, log: Log) -> Generated:
    began = time.perf_counter()
    db = work / "tocsin.sqlite3"
    rows, steps = populate(f"sqlite:///{db}", work, areas, history, run, log)
    started = time.perf_counter()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    steps["checkpoint"] = round(time.perf_counter() - started, 1)
    return Generated(db, rows, history, time.perf_counter() - began, False, steps)


def populate(url: str, work: Path, areas: int, history: int, run: Run,
             log: Log) -> tuple[int, dict[str, float]]:
    """Fill the empty database at `url` (any tocsin supports): the tree through the CLI, the
    history in bulk, one real declaration. Returns the number of areas and each step's
    seconds; `work` holds the tree's CSV."""
    rng = random.Random(f"tocsin-scale-{GENERATOR_VERSION}-{areas}-{history}")
    steps: dict[str, float] = {}

    def step(name: str, started: float) -> None:
        steps[name] = round(time.perf_counter() - started, 1)
        log(f"  {name}: {steps[name]:.1f} s")

    started = time.perf_counter()
    header, rows = tree_rows(areas, rng)
    csv_path = work / "areas.csv"
    write_csv(csv_path, header, rows)
    step(f"tree CSV ({len(rows):,} areas)", started)
    started = time.perf_counter()
    run(["init"], url, "tocsin init", 600)
    step("tocsin init", started)
    started = time.perf_counter()
    run(["areas", "import", str(csv_path)], url, "tocsin areas import", 3600)
    step("tocsin areas import", started)
    started = time.perf_counter()
    insert_history(url, history, rows, rng)
    step(f"history ({history:,} declarations, bulk insert)", started)
    started = time.perf_counter()
    run(["declare", "--scheme", SCHEME, "--level", "moderate", "--area", LIVE_AREA,
          "--headline", "Moderate terrorism threat level in Akmola region (benchmark)",
          "--lang", "en"], url, "tocsin declare", 3600)
    step("tocsin declare (one real declaration)", started)
    return len(rows), steps
