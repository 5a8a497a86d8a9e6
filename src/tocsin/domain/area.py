"""Areas and the tree they form: a country contains regions, regions contain districts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tocsin.domain.errors import InvalidInput, unknown

CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
AREAS_HINT = "try 'tocsin areas list'"


class AreaKind(StrEnum):
    COUNTRY = "country"
    REGION = "region"
    CITY = "city"
    DISTRICT = "district"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class Area:
    code: str
    kind: AreaKind
    names: Mapping[str, str]
    parent: str | None = None
    geocodes: Sequence[tuple[str, str]] = ()
    """(valueName, value) pairs, as CAP <geocode> carries them: ('ISO3166-2', 'KZ-75')."""
    timezone: str | None = None
    """IANA time zone for displays; inherited from the parent when None."""
    geometry: Mapping[str, Any] | None = None
    """A GeoJSON Polygon or MultiPolygon geometry object, already validated."""
    grid: tuple[int, int] | None = None
    """(row, column) of the area's tile on a tile-grid map, for areas drawn without shapes."""


def check_code(code: str, what: str = "area code") -> str:
    """Return `code` if it is a valid area code, else raise InvalidInput."""
    if not CODE_PATTERN.match(code):
        raise InvalidInput(
            f"{what} {code!r} is not valid",
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return code


@dataclass(frozen=True)
class AreaTree:
    """A validated forest of areas: unique codes, known parents, no cycles."""

    areas: Mapping[str, Area]
    order: tuple[str, ...] = field(init=False)
    """Every code, parents before children (breadth-first from the roots)."""
    _children: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        children: dict[str, list[str]] = {code: [] for code in self.areas}
        roots: list[str] = []
        for code, area in self.areas.items():
            if area.parent is None:
                roots.append(code)
            elif area.parent not in self.areas:
                raise InvalidInput(
                    f"area {code!r} names parent {area.parent!r}, which is not known",
                    "import the parent first or in the same file",
                )
            elif area.parent == code:
                raise InvalidInput(f"area {code!r} names itself as its parent", "fix its parent")
            else:
                children[area.parent].append(code)
        order: list[str] = []
        queue = list(roots)
        while queue:
            order.extend(queue)
            queue = [child for code in queue for child in children[code]]
        if len(order) != len(self.areas):
            stuck = sorted(set(self.areas) - set(order))
            raise InvalidInput(
                f"areas {', '.join(stuck[:10])} form a cycle of parents",
                "every chain of parents must end at an area without a parent",
            )
        object.__setattr__(self, "order", tuple(order))
        object.__setattr__(self, "_children", children)

    @classmethod
    def build(cls, areas: Iterable[Area], *, checked: bool = False) -> AreaTree:
        """A tree from a list of areas; refuses duplicate codes, and invalid codes unless
        they were `checked` before (areas read back from the store)."""
        return cls(_index(areas, checked=checked))

    def merged(self, areas: Iterable[Area]) -> AreaTree:
        """A new tree with `areas` added, or replacing those with the same code."""
        return AreaTree({**self.areas, **_index(areas)})

    def __contains__(self, code: object) -> bool:
        return code in self.areas

    def __iter__(self) -> Iterator[Area]:
        return (self.areas[code] for code in self.order)

    def __len__(self) -> int:
        return len(self.areas)

    def get(self, code: str) -> Area:
        """The area with this code; NotFound with close matches otherwise."""
        try:
            return self.areas[code]
        except KeyError:
            raise unknown("area", code, self.areas, AREAS_HINT) from None

    def children(self, code: str) -> list[str]:
        return list(self._children[code])

    def ancestors(self, code: str) -> list[str]:
        """Codes of the parent, grandparent, … up to the root."""
        out: list[str] = []
        parent = self.get(code).parent
        while parent is not None:
            out.append(parent)
            parent = self.areas[parent].parent
        return out

    def descendants(self, code: str) -> list[str]:
        out: list[str] = []
        queue = [code]
        while queue:
            queue = [child for c in queue for child in self._children[c]]
            out.extend(queue)
        return out

    def timezone(self, code: str) -> str | None:
        """The area's own time zone, else the nearest ancestor's, else None."""
        for c in (code, *self.ancestors(code)):
            tz = self.areas[c].timezone
            if tz:
                return tz
        return None


def _index(areas: Iterable[Area], *, checked: bool = False) -> dict[str, Area]:
    by_code: dict[str, Area] = {}
    for area in areas:
        if not checked:
            check_code(area.code)
        if area.code in by_code:
            raise InvalidInput(f"area code {area.code!r} appears twice", "give each area one entry")
        by_code[area.code] = area
    return by_code
