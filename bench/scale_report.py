"""The table bench/scale.py prints: one row per measure, one column per size."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One measure at one size: what to print, whether it meets its target (None: it has no
    target or was not measured), a short note, and the number behind it."""

    text: str
    ok: bool | None
    note: str = ""
    value: float | None = None

    @classmethod
    def seconds(cls, seconds: float, ok: bool | None, note: str = "") -> Figure:
        text = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
        return cls(text, ok, note, seconds)

    @classmethod
    def timeout(cls, seconds: float, note: str = "") -> Figure:
        return cls(f"timeout after {seconds:g} s", False, note)

    @classmethod
    def failed(cls, message: str) -> Figure:
        """An error, noted by the line of `message` that names it (a traceback's last)."""
        return cls("error", False, error_line(message)[:200])

    @classmethod
    def skipped(cls, why: str) -> Figure:
        return cls("—", None, why)

    def cell(self) -> str:
        mark = {True: " ✓", False: " ✗", None: ""}[self.ok]
        return f"{self.text}{mark}" + (f" ({self.note})" if self.note else "")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def error_line(text: str) -> str:
    """The line of a message or a log tail that says what went wrong: the last one naming an
    exception or an error, else the first."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines
             if re.match(r"^(\w+\.)*\w*(Error|Exception|Exit)\b", line)
             or line.lower().startswith("error")]
    return (named[-1] if named else lines[0] if lines else "").replace("|", "/")


ROWS: tuple[tuple[str, str, str], ...] = (
    ("start", "`tocsin serve` start to first 200", "< 2 s"),
    ("rss", "server RSS after a full crawl of the area pages", "< 1 GiB"),
    ("latency", "regional change → changed area page and `/api/v1/levels` show it "
                "(p50 / p99 of 30)", "< 50 ms / < 200 ms"),
    ("consistent", "regional change → every affected document consistent (overview, feeds, "
                   "map, subtree)", "< 1 s"),
    ("countrywide", "countrywide change → every area page consistent", "< 5 s at 100,000"),
    ("throughput", "read throughput on one area page during a burst of 100 regional changes, "
                   "against the same server idle", "≥ 0.5×"),
    ("idle_cpu", "idle CPU of server + worker over 60 s", "< 1% of a core"),
    ("publish_one", "`publish --to` after one regional change", "< 1 s, < 1% of the files"),
    ("publish_full", "full `publish --to` from empty", "(report)"),
)


def print_table(say: Callable[[str], None], rows: Sequence[tuple[str, str, str]],
                figures: Mapping[int, Mapping[str, Figure]],
                details: Mapping[int, Mapping[str, Any]]) -> None:
    """A Markdown table: measures down, sizes across; then what each size cost."""
    sizes = list(figures)
    headings = []
    for size in sizes:
        database = details[size].get("database", {})
        areas = database.get("areas")
        history = database.get("history")
        headings.append(f"{size:,}" + (f" ({areas:,} areas, {history:,} decl.)"
                                       if areas is not None else ""))
    say("| measure | target | " + " | ".join(headings) + " |")
    say("| --- | --- | " + " | ".join("---" for _ in sizes) + " |")
    for key, label, target in rows:
        cells = [figures[size].get(key, Figure.skipped("not reached")).cell() for size in sizes]
        say(f"| {label} | {target} | " + " | ".join(cells) + " |")
    extra: list[tuple[str, Callable[[Mapping[str, Any]], str]]] = [
        ("generate the database (once; cached after)", _generated),
        ("measure this size", lambda d: _s(d.get("measure_s"))),
        ("a change's commit (the latency writer, service layer), p50",
         lambda d: _s(d.get("latency", {}).get("declare_p50_s"))),
        ("server settled after start (under 30% of a core)", lambda d: _s(d.get("settled_s"))),
    ]
    for label, show in extra:
        say(f"| {label} | | " + " | ".join(show(details[size]) for size in sizes) + " |")


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} s"


def _generated(details: Mapping[str, Any]) -> str:
    database = details.get("database")
    if not database:
        return "—"
    return f"{database['generate_s']:,.0f} s" + (" (cached)" if database["cached"] else "")
