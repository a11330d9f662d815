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

from syncer.errors import ConfigError, Problem
from syncer.model import DEFAULT_LADDER, StageLadder
from syncer.policies.hierarchy import AGGREGATES, Hierarchy
from syncer.policies.highwater import AccountStage, resolve_account_stage
from syncer.policies.primary import PRIMARY_POLICIES, STICKY, choose_primary
from syncer.policies.resolve import Resolver
from syncer.policies.scale import StageScale
from syncer.policies.stage import UserStage, resolve_user_stage

__all__ = [
    "AGGREGATES",
    "PRIMARY_POLICIES",
    "AccountStage",
    "Hierarchy",
    "PolicySettings",
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
