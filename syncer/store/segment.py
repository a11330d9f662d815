"""Segment-spec ``identify`` and ``group`` calls as store patches.

One call per JSON line, applied in file order (a later call's traits win):

``identify`` (``userId``, ``traits``, ``timestamp``) describes a user:

* ``email``, ``firstName``/``first_name``, ``lastName``/``last_name``,
  ``createdAt``/``created_at``, ``lead_stage``/``leadStage`` fill the user's columns.
* ``account_id``/``accountId`` ties the user to that account (creating a bare account and a
  membership if needed); then ``role`` and ``stage`` are the membership's role and stage.
  Without an account, ``stage`` is the user's ``lead_stage``.
* every other trait (``name``, ``plan``, ``title``, ...) becomes a user attribute; ``id`` (which
  repeats ``userId``) is dropped.

``group`` (``groupId``, ``userId``, ``traits``, ``timestamp``) describes an account:

* ``name``, ``domain`` (or else ``website``, reduced to its host without ``www.``),
  ``createdAt``/``created_at``, ``parent_account_id``/``parentAccountId``, ``stage`` fill the
  account's columns; ``member_role`` and ``member_stage`` are the membership's role and stage.
* with a ``userId``, the user is tied to the account (bare user and membership if needed).
* every other trait (``plan``, ``industry``, ``employees``, ...) becomes an account attribute.

``timestamp`` becomes ``updated_at`` of what the call describes (and of the membership it
touches), and a membership's ``joined_at`` is the earliest call that tied the two. ``track``,
``page``, ``screen`` and ``alias`` calls, and anonymous identify calls (an ``anonymousId``, no
``userId``), are counted as ignored; any other ``type`` is an error, and so is an identify or
group call with neither ``userId`` nor ``anonymousId`` (Segment's spec requires one).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from syncer.errors import Problem
from syncer.store.values import (
    SPECS,
    BadValue,
    ParsedRow,
    Patch,
    column_value,
    json_attribute,
    key_text,
    parse_timestamp,
    text_value,
)

IGNORED_TYPES = frozenset({"track", "page", "screen", "alias"})


def _spellings(column: str) -> tuple[str, ...]:
    """A column's trait names: its own (snake_case) and, where it differs, its camelCase one,
    since Segment libraries send either (``first_name``, ``firstName``)."""
    head, *rest = column.split("_")
    camel = head + "".join(part.capitalize() for part in rest)
    return (column,) if camel == column else (column, camel)


def _traits(*columns: str) -> dict[str, str]:
    """Trait name -> column, for each of ``columns`` under each of its spellings."""
    return {name: column for column in columns for name in _spellings(column)}


USER_TRAITS = _traits("email", "first_name", "last_name", "created_at", "lead_stage")
ACCOUNT_TRAITS = _traits("name", "domain", "created_at", "parent_account_id", "stage")
GROUP_MEMBER_TRAITS = {"member_role": "role", "member_stage": "stage"}
IDENTIFY_MEMBER_TRAITS = {"role": "role", "stage": "stage"}
ACCOUNT_ID_TRAITS = _spellings("account_id")


class _Event:
    """Collects the problems of one call while its fields are read."""

    def __init__(self, obj: dict[str, Any], file: str, line: int) -> None:
        self.obj = obj
        self.file = file
        self.line = line
        self.key: str | None = None
        self.problems: list[Problem] = []

    def bad(self, field: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(message, self.file, self.line, field, self.key, hint))

    def top(self, *names: str) -> Any:
        for name in names:
            if name in self.obj:
                return self.obj[name]
        return None

    def id(self, field: str, *names: str) -> str | None:
        try:
            return key_text(self.top(field, *names))
        except BadValue as exc:
            self.bad(field, str(exc), exc.hint)
            return None

    def traits(self) -> dict[str, Any]:
        traits = self.obj.get("traits")
        if traits is None:
            return {}
        if not isinstance(traits, dict):
            self.bad("traits", f"expected a JSON object, got {type(traits).__name__}")
            return {}
        return traits

    def timestamp(self) -> datetime | None:
        raw = self.obj.get("timestamp")
        if raw is None:
            return None
        try:
            text = text_value(raw)
            return None if text is None else parse_timestamp(text)
        except BadValue as exc:
            self.bad("timestamp", str(exc), exc.hint)
            return None

    def column(self, table: str, column: str, trait: str, raw: Any) -> Any:
        try:
            return column_value(SPECS[table], column, raw)
        except BadValue as exc:
            self.bad(f"traits.{trait}", str(exc), exc.hint)
            return None

    def attribute(self, trait: str, raw: Any) -> Any:
        try:
            return json_attribute(raw)
        except BadValue as exc:
            self.bad(f"traits.{trait}", str(exc), exc.hint)
            return None


def parse_event(obj: dict[str, Any], file: str, line: int) -> ParsedRow:
    """One Segment call as patches for accounts, users and memberships (or problems)."""
    event = _Event(obj, file, line)
    kind = obj.get("type")
    if kind in IGNORED_TYPES:
        return ParsedRow(line, ignored=True)
    if kind not in ("identify", "group"):
        event.bad(
            "type",
            f"unknown Segment call type {kind!r}",
            hint="syncer loads identify and group calls (and ignores track, page, screen, alias)",
        )
        return ParsedRow(line, problems=event.problems)
    user_id = event.id("userId", "user_id")
    if user_id is None and not event.problems and event.top("anonymousId") in (None, ""):
        # Segment's spec requires one of the two on every call: this is not a call at all.
        group_id = event.top("groupId", "group_id") if kind == "group" else None
        event.key = None if group_id is None else str(group_id)
        event.bad(
            "userId",
            f"{'an' if kind == 'identify' else 'a'} {kind} call needs a userId (or an "
            "anonymousId, for a visitor); it has neither",
            hint="fix the exporter, or remove the line",
        )
        return ParsedRow(line, problems=event.problems)
    if kind == "identify":
        if user_id is None and not event.problems:
            return ParsedRow(line, ignored=True)  # anonymous: no product id to key it by
        patches = _identify(event, user_id)
    else:
        patches = _group(event, user_id)
    if event.problems:
        return ParsedRow(line, problems=event.problems)
    return ParsedRow(line, patches=patches)


def _identify(event: _Event, user_id: str | None) -> list[Patch]:
    event.key = user_id
    traits = event.traits()
    ts = event.timestamp()
    account_id: str | None = None
    for name in ACCOUNT_ID_TRAITS:
        if name in traits:
            try:
                account_id = key_text(traits[name])
            except BadValue as exc:
                event.bad(f"traits.{name}", str(exc), exc.hint)
    user = Patch("users", (user_id or "",))
    member_values: dict[str, Any] = {}
    for trait, raw in traits.items():
        if trait in ACCOUNT_ID_TRAITS or trait == "id":
            continue
        if trait in USER_TRAITS:
            user.values[USER_TRAITS[trait]] = event.column("users", USER_TRAITS[trait], trait, raw)
        elif trait in IDENTIFY_MEMBER_TRAITS and account_id is not None:
            column = IDENTIFY_MEMBER_TRAITS[trait]
            member_values[column] = event.column("memberships", column, trait, raw)
        elif trait == "stage":  # no account named: the user's own stage
            if "lead_stage" in traits or "leadStage" in traits:
                event.bad(
                    "traits.stage",
                    "stage and lead_stage both given without an account_id",
                    hint="use lead_stage for the user's own stage, or name the account",
                )
            else:
                user.values["lead_stage"] = event.column("users", "lead_stage", trait, raw)
        else:
            user.attributes[trait] = event.attribute(trait, raw)
    return _patches(user, ts, user_id, account_id, member_values)


def _group(event: _Event, user_id: str | None) -> list[Patch]:
    group_id = event.id("groupId", "group_id")
    event.key = group_id
    if group_id is None and not event.problems:
        event.bad(
            "groupId",
            "missing; a group call needs the account id in groupId",
            hint="fix the exporter, or remove the line",
        )
    traits = event.traits()
    ts = event.timestamp()
    account = Patch("accounts", (group_id or "",))
    member_values: dict[str, Any] = {}
    for trait, raw in traits.items():
        if trait == "id":
            continue
        if trait in ACCOUNT_ID_TRAITS:
            if _same_id(raw, group_id):
                continue
            event.bad(f"traits.{trait}", f"{raw!r} differs from groupId {group_id!r}")
        elif trait in ACCOUNT_TRAITS:
            column = ACCOUNT_TRAITS[trait]
            account.values[column] = event.column("accounts", column, trait, raw)
        elif trait in GROUP_MEMBER_TRAITS:
            column = GROUP_MEMBER_TRAITS[trait]
            member_values[column] = event.column("memberships", column, trait, raw)
        elif trait == "website" and "domain" not in traits:
            account.values["domain"] = event.column("accounts", "domain", trait, _host(raw))
        else:
            account.attributes[trait] = event.attribute(trait, raw)
    return _patches(account, ts, user_id, group_id, member_values)


def _patches(
    described: Patch,
    ts: datetime | None,
    user_id: str | None,
    account_id: str | None,
    member_values: dict[str, Any],
) -> list[Patch]:
    """The record a call describes, stamped with its timestamp; when the call ties a user to an
    account, also the other end (bare if new) and their membership, in load order."""
    if ts is not None:
        described.values["updated_at"] = ts
    if user_id is None or account_id is None:
        return [described]
    account = described if described.table == "accounts" else Patch("accounts", (account_id,))
    user = described if described.table == "users" else Patch("users", (user_id,))
    membership = Patch("memberships", (user_id, account_id), member_values)
    if ts is not None:
        membership.values["updated_at"] = ts
        membership.earliest["joined_at"] = ts
    return [account, user, membership]


def _same_id(raw: Any, group_id: str | None) -> bool:
    try:
        return key_text(raw) == group_id
    except BadValue:
        return False


def _host(website: Any) -> Any:
    """``https://www.example.com/x`` -> ``example.com``; anything else is returned unchanged."""
    if not isinstance(website, str) or not website.strip():
        return website
    text = website.strip()
    host = urlsplit(text if "://" in text else f"//{text}").hostname or text
    return host.removeprefix("www.")
