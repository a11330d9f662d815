"""Policies: the monotonic stage, the primary account, the account hierarchy.

Pure functions over :mod:`syncer.model` records; persistence of the marks they return is the
caller's (:class:`syncer.state.marks.MarkStore`). The public API:

* :class:`PolicySettings` — the configuration (ladder, primary policy, roll-ups).
* :class:`Resolver` — streams of users/accounts + marks → resolved records + changed marks.
* :class:`Hierarchy` — the account forest with roll-ups.
* :func:`resolve_user_stage`, :func:`resolve_account_stage`, :func:`choose_primary` — the rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncer.errors import ConfigError, Problem
from syncer.model import DEFAULT_ALIASES, DEFAULT_CHURNED, DEFAULT_LADDER, StageLadder
from syncer.policies.hierarchy import AGGREGATES, Hierarchy
from syncer.policies.primary import PRIMARY_POLICIES, STICKY, choose_primary
from syncer.policies.resolve import Resolver, ResolveStats
from syncer.policies.stage import (
    AccountStage,
    StageScale,
    UserStage,
    resolve_account_stage,
    resolve_user_stage,
)

__all__ = [
    "AGGREGATES",
    "PRIMARY_POLICIES",
    "AccountStage",
    "Hierarchy",
    "PolicySettings",
    "ResolveStats",
    "Resolver",
    "StageScale",
    "UserStage",
    "choose_primary",
    "resolve_account_stage",
    "resolve_user_stage",
]


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Which ladder, which primary-account policy, which attributes roll up and how.

    ``primary`` is one of :data:`PRIMARY_POLICIES` (default ``sticky``: a CRM association does
    not flap). ``rollups`` maps an account attribute to one of :data:`AGGREGATES`.
    """

    ladder: StageLadder = DEFAULT_LADDER
    primary: str = STICKY
    rollups: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.primary not in PRIMARY_POLICIES:
            problems.append(
                Problem(
                    f"unknown primary-account policy {self.primary!r}",
                    field="primary",
                    hint=f"use one of {', '.join(PRIMARY_POLICIES)}",
                )
            )
        for attr, agg in self.rollups.items():
            if agg not in AGGREGATES:
                problems.append(
                    Problem(
                        f"roll-up of {attr!r}: unknown aggregate {agg!r}",
                        field=f"rollups.{attr}",
                        hint=f"use one of {', '.join(AGGREGATES)}",
                    )
                )
        if problems:
            raise ConfigError(problems, summary="policy settings are wrong")

    @classmethod
    def from_config(
        cls, data: Mapping[str, Any] | None, *, file: str | None = None
    ) -> PolicySettings:
        """Settings from the ``policies`` section of a configuration file.

        Shape (every key optional)::

            stages: [visitor, MAL, MQL, CUS, PRO]   # lowest first
            churned: churned
            aliases: {customer: CUS}                # added to the defaults unless stages is set
            primary: sticky                         # first | last | highest_stage | sticky
            rollups: {licenses: sum, seats: max}    # or a list of attributes, each summed
        """
        data = dict(data or {})
        problems: list[Problem] = []
        known = {"stages", "churned", "aliases", "primary", "rollups"}
        for key in sorted(set(data) - known):
            problems.append(
                Problem(
                    "unknown policy setting",
                    file=file,
                    field=key,
                    hint=f"use {', '.join(sorted(known))}",
                )
            )
        rollups_raw = data.get("rollups") or {}
        rollups: dict[str, str] = {}
        if isinstance(rollups_raw, list):
            rollups = {str(attr): "sum" for attr in rollups_raw}
        elif isinstance(rollups_raw, Mapping):
            rollups = {str(k): str(v or "sum") for k, v in rollups_raw.items()}
        else:
            problems.append(
                Problem("must be a mapping or a list of attributes", file=file, field="rollups")
            )
        try:
            ladder = _ladder(data)
        except (ValueError, TypeError) as exc:
            problems.append(Problem(str(exc), file=file, field="stages"))
            ladder = DEFAULT_LADDER
        if problems:
            raise ConfigError(problems, summary="policy settings are wrong")
        try:
            return cls(ladder, str(data.get("primary") or STICKY), rollups)
        except ConfigError as exc:
            raise ConfigError(
                [replace_file(p, file) for p in exc.problems], summary=exc.summary
            ) from None


def _ladder(data: Mapping[str, Any]) -> StageLadder:
    if "stages" not in data and "churned" not in data and "aliases" not in data:
        return DEFAULT_LADDER
    stages = data.get("stages")
    aliases = dict(data.get("aliases") or {})
    if stages is None:
        return StageLadder(
            churned=str(data.get("churned") or DEFAULT_CHURNED),
            aliases={**DEFAULT_ALIASES, **aliases},
        )
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        raise TypeError("stages must be a list of stage names, lowest first")
    return StageLadder(
        names=tuple(stages), churned=str(data.get("churned") or DEFAULT_CHURNED), aliases=aliases
    )


def replace_file(problem: Problem, file: str | None) -> Problem:
    """``problem`` located in ``file``."""
    return Problem(problem.message, file, problem.line, problem.field, problem.key, problem.hint)
