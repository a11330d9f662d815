"""A user object's fields that read the user's own row alone.

A user whose email or names changed, and nothing else (:meth:`ChangeSet.own_changes
<syncer.store.feed.ChangeSet.own_changes>`), is in an incremental run's closure for those
columns only. Every field of its record that reads its row (``user.email``, ``user.first_name``,
``attributes.plan``) can be written again from the row; every other field (its stage, its
memberships, its primary account) reads nothing the change touched and stays as it was sent
last. :class:`UserRowFields` holds the former, and says whether an object qualifies: no field
or hint may read the row *and* anything else, and a hint that reads something else may only be
one the connector does not read when it writes a record the destination already holds
(``Capabilities.update_hints``: such a record goes without it).

What an expression reads is taken from its syntax tree (Jinja's undeclared names): the row is
``user`` and ``attributes`` (the user's attributes); any other name is something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import meta

from syncer.mapping.compile import Evaluator, parse_value
from syncer.mapping.context import Attributes
from syncer.mapping.filters import make_environment
from syncer.mapping.objects import ObjectMapping
from syncer.mapping.writers import Payload, Writer
from syncer.model import User

__all__ = ["ROW_NAMES", "UserRowFields"]

#: The names of a user's context that come from its own row.
ROW_NAMES = frozenset({"user", "attributes"})


@dataclass(frozen=True, slots=True)
class UserRowFields:
    """The writers and hints of one user object that read the user's row alone."""

    writers: tuple[Writer, ...]
    hints: tuple[tuple[str, Evaluator], ...]

    @classmethod
    def of(cls, obj: ObjectMapping, update_hints: frozenset[str] | None) -> UserRowFields | None:
        """``obj``'s row fields, or ``None`` when a record of it cannot be made from its row
        and its last payload (module docstring). ``update_hints``: the hints the connector
        reads writing a record the destination holds (``None``: any)."""
        if obj.source != "users":
            return None
        env = make_environment(obj.ladder)

        def row_only(text: str) -> bool | None:
            """True: reads the row alone; False: not the row; None: both."""
            names = meta.find_undeclared_variables(parse_value(text, env))
            if names <= ROW_NAMES:
                return True
            return None if names & ROW_NAMES else False

        writers: list[Writer] = []
        for f in obj.fields:
            row = row_only(f.template)
            if row is None:
                return None
            if row:
                writers.append(f.write)
        hints: list[tuple[str, Evaluator]] = []
        for (name, text), (_, evaluate) in zip(obj.hints.items(), obj.hint_evaluators, strict=True):
            row = row_only(text)
            if row is None:
                return None
            if row:
                hints.append((name, evaluate))
            elif update_hints is None or name in update_hints:
                return None  # the connector would miss it
        if not writers:
            return None
        return cls(tuple(writers), tuple(hints))

    def render(self, user: User, payload: Payload) -> Mapping[str, Any]:
        """Write the row fields of ``user`` into ``payload`` (its last payload) and return the
        row hints. Raises whatever a writer raises (a value the formatter refuses): such a
        record is rebuilt, and the mapping's reference path says why."""
        ctx = {"user": user, "attributes": Attributes(user.attributes)}
        for write in self.writers:
            write(ctx, payload)
        return {name: evaluate(ctx) for name, evaluate in self.hints}
