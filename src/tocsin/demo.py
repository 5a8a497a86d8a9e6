"""The January 2022 replay: Kazakhstan's countrywide critical terrorism threat level.

Modelled on public reports, for demonstration: a countrywide critical (red) level from Friday
7 January 2022, then on 13 January one change, in effect from 14 January, that replaces it with
regional levels. Which regions kept moderate for 10 days, 14 days or until further notice is
illustrative. The areas are today's (2024) ISO 3166-2:KZ regions; a 2022 region that has since
been split is declared for all the regions made from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path

from sqlalchemy import Engine

from tocsin.domain.declaration import Declaration, DeclarationRequest, Statement
from tocsin.domain.times import parse_instant
from tocsin.ingest.areas import read_areas_csv
from tocsin.service import commands

SCHEME = "kz-terror"
ACTOR = "demo-replay"
SENDER = "Kazakhstan counter-terrorism authorities (demonstration replay)"
ALMATY_CITY = "KZ-75"
DISCLAIMER = (
    "This is a replay of January 2022 for demonstration, modelled on public reports; the "
    "terms given to individual regions are illustrative."
)


def t(text: str) -> datetime:
    return parse_instant(text)


COUNTRYWIDE_AT = t("2022-01-07T09:00+06:00")
STEP_DOWN_PUBLISHED_AT = t("2022-01-13T18:00+06:00")
STEP_DOWN_EFFECTIVE = t("2022-01-14T00:00+06:00")

# 2022 regions, as today's codes: Almaty region then included Zhetysu (KZ-33); East
# Kazakhstan included Abai (KZ-10); Karaganda included Ulytau (KZ-62).
CRITICAL = ("KZ-75", "KZ-19", "KZ-33", "KZ-31")
HIGH_14_DAYS = ("KZ-71", "KZ-79")
MODERATE_10_DAYS = ("KZ-15", "KZ-23", "KZ-27", "KZ-47")
MODERATE_14_DAYS = ("KZ-43", "KZ-61", "KZ-35", "KZ-62", "KZ-63", "KZ-10")
MODERATE_OPEN = ("KZ-11", "KZ-39", "KZ-55", "KZ-59")

INSTANTS = (
    ("8 January 2022: countrywide critical", t("2022-01-08T12:00+06:00")),
    ("15 January 2022: regions stepped down separately", t("2022-01-15T12:00+06:00")),
    ("25 January 2022: the 10-day moderate levels have ended", t("2022-01-25T12:00+06:00")),
    ("1 February 2022: the 14-day levels have ended", t("2022-02-01T12:00+06:00")),
)


def _texts(kk: str, ru: str, en: str) -> dict[str, Statement]:
    return {"kk": Statement(kk), "ru": Statement(ru), "en": Statement(en)}


COUNTRYWIDE_TEXTS = _texts(
    "Бүкіл Қазақстан аумағында террористік қауіптің «қызыл» қатерлі деңгейі белгіленді",
    "На всей территории Казахстана введён критический «красный» уровень террористической "
    "опасности",
    "Critical (red) terrorism threat level declared for the whole of Kazakhstan",
)


def _step_down_texts(level: str) -> dict[str, Statement]:
    names = {
        "critical": ("қатерлі («қызыл»)", "критический («красный»)", "critical (red)"),
        "high": ("жоғары («қызғылт сары»)", "высокий («оранжевый»)", "high (orange)"),
        "moderate": ("орташа («сары»)", "умеренный («жёлтый»)", "moderate (yellow)"),
    }[level]
    return _texts(
        f"Террористік қауіп деңгейі өңірлер бойынша қайта белгіленді: {names[0]}",
        f"Уровень террористической опасности пересмотрен по регионам: {names[1]}",
        f"Terrorism threat level set region by region: {names[2]}",
    )


def countrywide() -> DeclarationRequest:
    return DeclarationRequest(scheme=SCHEME, level="critical", areas=("KZ",),
                              texts=COUNTRYWIDE_TEXTS, sender=SENDER)


def step_down(countrywide_id: str) -> list[DeclarationRequest]:
    """One change: regional levels that together replace the countrywide declaration."""

    def part(level: str, areas: tuple[str, ...], days: int | None) -> DeclarationRequest:
        expires = STEP_DOWN_EFFECTIVE + timedelta(days=days) if days else None
        return DeclarationRequest(
            scheme=SCHEME, level=level, areas=areas, texts=_step_down_texts(level),
            sender=SENDER, effective=STEP_DOWN_EFFECTIVE, expires=expires,
            replaces=(countrywide_id,))

    return [
        part("critical", CRITICAL, None),
        part("high", HIGH_14_DAYS, 14),
        part("moderate", MODERATE_10_DAYS, 10),
        part("moderate", MODERATE_14_DAYS, 14),
        part("moderate", MODERATE_OPEN, None),
    ]


@dataclass(frozen=True)
class Replay:
    countrywide: Declaration
    step_down: list[Declaration]


def kazakhstan_areas_file() -> Path:
    return Path(str(files("tocsin") / "data" / "areas" / "kz.csv"))


def replay(engine: Engine, *, set_up_at: datetime) -> Replay:
    """Set up a fresh database and replay January 2022, each step at its own instant."""
    commands.initialise(engine, now=set_up_at, actor=ACTOR)
    commands.import_areas(engine, read_areas_csv(kazakhstan_areas_file()), now=set_up_at,
                          actor=ACTOR)
    [first] = commands.declare(engine, [countrywide()], now=COUNTRYWIDE_AT, actor=ACTOR)
    regional = commands.declare(engine, step_down(first.id), now=STEP_DOWN_PUBLISHED_AT,
                                actor=ACTOR)
    return Replay(first, regional)
