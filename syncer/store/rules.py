"""Checks of an input row against the sync configuration: stages on the ladder, numeric roll-ups.

The value parsers (:mod:`syncer.store.values`) check what any store must hold; these rules check
what the *configuration* says, so that a row the sync would refuse or silently drop is refused at
load, with its file and line, instead:

* every stage (an account's ``stage``, a user's ``lead_stage``, a membership's ``stage``) is a
  stage, an alias or the churn marker of the ladder;
* every attribute that rolls up with ``sum``, ``min`` or ``max`` is a finite number (the
  hierarchy skips anything else). CSV text that spells a finite decimal (``12.50``, ``1e3``) is
  stored as that number; ``NaN``, ``inf``, ``12 seats`` or ``true`` are refused. ``count``
  roll-ups count any value.

``syncer load`` takes the ladder and roll-ups of ``--config`` when given, and the defaults
otherwise (:meth:`LoadRules.default`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syncer.errors import Problem
from syncer.model import DEFAULT_LADDER, DEFAULT_ROLLUPS, StageLadder, UnknownStage
from syncer.store.values import SPECS, ParsedRow, Patch

if TYPE_CHECKING:
    from syncer.config import SyncConfig


@dataclass(frozen=True, slots=True)
class LoadRules:
    """The ladder and the roll-ups (attribute -> aggregate) rows are checked against; ``origin``
    says where they come from, for hints."""

    ladder: StageLadder = DEFAULT_LADDER
    rollups: Mapping[str, str] = field(default_factory=dict)
    origin: str = "the default ladder"

    @classmethod
    def default(cls) -> LoadRules:
        """The default ladder and roll-ups: what a config without ``stages`` or ``policies``
        gives."""
        return cls(DEFAULT_LADDER, dict(DEFAULT_ROLLUPS))

    @classmethod
    def from_config(cls, config: SyncConfig, origin: str) -> LoadRules:
        """The ladder and roll-ups of ``config`` (read from ``origin``, a file name)."""
        return cls(config.ladder, dict(config.policies.rollups), f"the ladder of {origin}")

    def check(self, row: ParsedRow, file: str) -> list[Problem]:
        """Problems of ``row``'s patches (none when it is fine); converts roll-up text that
        spells a number into the number, in place."""
        problems: list[Problem] = []
        for patch in row.patches:
            key = "/".join(patch.key)
            for column in SPECS[patch.table].stages:
                value = patch.values.get(column)
                if value is not None and not self._on_ladder(value):
                    problems.append(
                        Problem(
                            f"unknown stage {value!r}",
                            file,
                            row.line,
                            column,
                            key,
                            hint=f"use one of {', '.join(self.ladder.names)} or "
                            f"{self.ladder.churned} ({self.origin}; `syncer load --config "
                            "FILE` checks against a configured ladder)",
                        )
                    )
            if patch.table == "accounts" and self.rollups:
                problems.extend(self._rollups(patch, file, row.line, key))
        return problems

    def _on_ladder(self, value: str) -> bool:
        try:
            self.ladder.normalize(value)
        except UnknownStage:
            return False
        return True

    def _rollups(self, patch: Patch, file: str, line: int, key: str) -> list[Problem]:
        problems: list[Problem] = []
        for attr, aggregate in self.rollups.items():
            value = patch.attributes.get(attr)
            if value is None or aggregate == "count":
                continue
            number = as_number(value)
            if number is None:
                problems.append(
                    Problem(
                        f"{value!r} is not a number; {attr!r} rolls up ({aggregate}) to the "
                        "parent accounts",
                        file,
                        line,
                        attr,
                        key,
                        hint="give a finite number (e.g. 12 or 12.5), or leave it empty",
                    )
                )
            else:
                patch.attributes[attr] = number
        return problems


def as_number(value: Any) -> int | float | None:
    """``value`` as a finite number (an int, a float, or text spelling one), else ``None``."""
    if type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        return None  # bool, list, object
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
