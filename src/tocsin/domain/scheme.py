"""Level schemes: an ordered set of colour-coded levels for one hazard."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from tocsin.domain.cap import Category, Certainty, Severity, Urgency
from tocsin.domain.errors import unknown


@dataclass(frozen=True, slots=True)
class CapMapping:
    """How a level is expressed in a CAP 1.2 <info> block."""

    severity: Severity
    urgency: Urgency
    certainty: Certainty


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    """A scheme's two-person rule."""

    from_level: str | None = None
    """Declarations at or above this level need a second person; None: none do."""
    lowering: bool = False
    """Whether a declaration that lowers what it replaces needs approval too."""
    cancelling: bool = False
    """Whether cancelling a declaration that needed approval needs approval too."""


@dataclass(frozen=True, slots=True)
class Level:
    key: str
    rank: int
    colour: str
    name: dict[str, str]
    colour_name: dict[str, str]
    meaning: dict[str, str]
    measures: dict[str, tuple[str, ...]]
    guidance: dict[str, tuple[str, ...]]
    cap: CapMapping


@dataclass(frozen=True, slots=True)
class Scheme:
    key: str
    name: dict[str, str]
    event: dict[str, str]
    description: dict[str, str]
    category: Category
    languages: tuple[str, ...]
    default_language: str
    levels: tuple[Level, ...]
    """Sorted by rank, lowest first."""
    baseline: str | None = None
    """Level in force where no declaration applies, or None (no level)."""
    expiry_required: bool = False
    max_term: timedelta | None = None
    source: str | None = None
    approval: ApprovalRule = ApprovalRule()
    _by_key: dict[str, Level] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {level.key: level for level in self.levels})

    def level(self, key: str) -> Level:
        """The level with this key; NotFound naming the scheme's levels otherwise."""
        try:
            return self._by_key[key]
        except KeyError:
            choices = ", ".join(self._by_key)
            raise unknown(
                f"level of scheme {self.key!r}", key, self._by_key, f"choose one of {choices}"
            ) from None

    @property
    def baseline_level(self) -> Level | None:
        return self._by_key[self.baseline] if self.baseline else None
