"""The HubSpot emulator's CRM search: ``POST /crm/v3/objects/{type}/search``.

Filters within a group are ANDed, groups are ORed. Limits follow HubSpot's search docs: at most
5 groups, 6 filters per group and 18 in all; ``limit`` at most 200 (default 10); no paging past
10,000 results. Results are sorted by record id unless ``sorts`` says otherwise.

``CONTAINS_TOKEN`` [unverified]: HubSpot documents it as matching whole tokens (words), with
``*`` as a wildcard, but not how it splits text. The emulator assumes: the property value and the
query are split into tokens on every character that is not a letter or digit (so ``; : @ . _ -``
and spaces all separate), compared case-insensitively, and the query's tokens must appear as a
contiguous run of the value's tokens; ``*`` inside a query token matches any characters within
one token. So on ``;34:CUS;110:MQL;`` the query ``;34:`` matches and ``;340:`` does not.
Search sees writes at once (HubSpot's index lags by seconds: do not rely on it in the write path).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from operator import eq, ge, gt, le, lt, ne
from typing import Any

from syncer.testing._hubspot_state import (
    ALWAYS_RETURNED,
    DEFAULT_PROPERTIES,
    LAST_MODIFIED,
    HubSpotError,
    StoredObject,
    parse_moment,
)

MAX_LIMIT = 200
DEFAULT_LIMIT = 10
MAX_RESULTS = 10_000
MAX_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 6, 18
_COMPARISONS: dict[str, Callable[[tuple[float, str], tuple[float, str]], bool]] = {
    "EQ": eq,
    "NEQ": ne,
    "LT": lt,
    "LTE": le,
    "GT": gt,
    "GTE": ge,
}
#: Operators whose ``NOT_`` form matches exactly the values they do not.
_NEGATABLE = ("IN", "HAS_PROPERTY", "CONTAINS_TOKEN")
OPERATORS = {*_COMPARISONS, "BETWEEN", *_NEGATABLE, *(f"NOT_{op}" for op in _NEGATABLE)}
_TOKEN = re.compile(r"[^\W_]+")
_QUERY_TOKEN = re.compile(r"(?:[^\W_]|\*)+")
_SEARCHABLE = {
    "contacts": ("firstname", "lastname", "email", "phone", "company"),
    "companies": ("name", "domain", "website", "phone"),
}


def tokens(text: str) -> list[str]:
    """The tokens CONTAINS_TOKEN compares (the emulator's assumption: see the module doc)."""
    return _TOKEN.findall(text.lower())


def contains_token(value: str | None, query: str) -> bool:
    """Whether the query's tokens appear, in order and adjacent, among the value's tokens."""
    wanted = _QUERY_TOKEN.findall(query.lower())
    if value is None or not wanted:
        return False
    have = tokens(value)
    for start in range(len(have) - len(wanted) + 1):
        if all(fnmatch.fnmatchcase(have[start + i], w) for i, w in enumerate(wanted)):
            return True
    return False


def _bad(message: str) -> HubSpotError:
    return HubSpotError("VALIDATION_ERROR", message)


def _comparable(definition: Mapping[str, Any], value: str) -> tuple[float, str]:
    """``value`` as its property's type orders it: ``(number, "")`` for numbers and dates (a
    timestamp), ``(0, lowercased text)`` otherwise. One property's values are all of one kind,
    so the pair orders them as HubSpot does, and one type serves every operator."""
    if definition["type"] == "number":
        try:
            return float(value), ""
        except ValueError as exc:
            raise _bad(f"{value} is not a number for property {definition['name']}") from exc
    if definition["type"] in ("date", "datetime"):
        moment = parse_moment(value)
        if moment is None:
            raise _bad(f"{value} is not a date for property {definition['name']}")
        return moment.timestamp(), ""
    return 0.0, value.lower()


def _matches(obj: StoredObject, flt: Mapping[str, Any], definitions: Mapping[str, Any]) -> bool:
    name, operator = flt["propertyName"], flt["operator"]
    positive = operator.removeprefix("NOT_")
    found = _holds(positive, obj.properties.get(name), flt, definitions[name])
    return found if positive == operator else not found


def _holds(
    operator: str, actual: str | None, flt: Mapping[str, Any], definition: Mapping[str, Any]
) -> bool:
    """Whether the property value ``actual`` meets the filter ``flt`` with ``operator`` (not a
    ``NOT_`` one)."""
    if operator == "HAS_PROPERTY":
        return actual is not None
    if operator == "CONTAINS_TOKEN":
        return contains_token(actual, str(flt.get("value", "")))
    if operator == "IN":
        wanted = {_comparable(definition, str(v)) for v in flt.get("values") or []}
        return actual is not None and _comparable(definition, actual) in wanted
    if actual is None:
        return operator == "NEQ"
    have = _comparable(definition, actual)
    want = _comparable(definition, str(flt.get("value", "")))
    if operator == "BETWEEN":
        high = _comparable(definition, str(flt.get("highValue", "")))
        return want <= have <= high
    return _COMPARISONS[operator](have, want)


def _check_filters(groups: Any, definitions: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("filters", []), list) for g in groups
    ):
        raise _bad("Invalid input JSON: filterGroups must be a list of {filters: [...]}")
    if len(groups) > MAX_GROUPS:
        raise _bad(f"Too many filter groups: {len(groups)} (at most {MAX_GROUPS})")
    checked = [list(g.get("filters", [])) for g in groups]
    if any(len(f) > MAX_FILTERS_PER_GROUP for f in checked):
        raise _bad(f"Too many filters in a group (at most {MAX_FILTERS_PER_GROUP})")
    if sum(len(f) for f in checked) > MAX_FILTERS:
        raise _bad(f"Too many filters: at most {MAX_FILTERS} in all groups together")
    for filters in checked:
        for flt in filters:
            if not isinstance(flt, dict) or flt.get("operator") not in OPERATORS:
                raise _bad(f"Invalid filter {flt!r}: operator must be one of {sorted(OPERATORS)}")
            if flt.get("propertyName") not in definitions:
                raise _bad(f'Property "{flt.get("propertyName")}" does not exist')
    return checked


def _sort_key(sorts: Any, definitions: Mapping[str, Any]) -> tuple[str | None, bool]:
    if not sorts:
        return None, False
    first = sorts[0]
    if isinstance(first, dict):
        name, descending = first.get("propertyName"), first.get("direction") == "DESCENDING"
    else:
        text = str(first)
        name, descending = text.lstrip("-"), text.startswith("-")
    if name not in definitions:
        raise _bad(f'Property "{name}" does not exist (in sorts)')
    return str(name), descending


def search(
    otype: str,
    body: Any,
    objects: Mapping[str, StoredObject],
    definitions: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Answer one search request body with HubSpot's ``{total, results, paging}``."""
    body = body or {}
    if not isinstance(body, dict):
        raise _bad("Invalid input JSON: expected an object")
    limit = body.get("limit", DEFAULT_LIMIT)
    if not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
        raise _bad(f"limit must be between 1 and {MAX_LIMIT}, got {limit!r}")
    try:
        offset = int(body.get("after") or 0)
    except ValueError as exc:
        raise _bad(
            f"after must be a paging cursor from a previous answer, got {body['after']!r}"
        ) from exc
    groups = _check_filters(body.get("filterGroups", []), definitions)
    sort_name, descending = _sort_key(body.get("sorts"), definitions)
    names = body.get("properties") or list(DEFAULT_PROPERTIES[otype])
    if unknown := [n for n in names if n not in definitions]:
        raise _bad(f"Properties {unknown} do not exist")
    query = str(body.get("query") or "")

    def selected(obj: StoredObject) -> bool:
        if groups and not any(all(_matches(obj, f, definitions) for f in g) for g in groups):
            return False
        return not query or any(
            contains_token(obj.properties.get(p), query + "*") for p in _SEARCHABLE[otype]
        )

    hits = sorted((o for o in objects.values() if selected(o)), key=lambda o: int(o.id))
    if sort_name is not None:
        present = [o for o in hits if o.properties.get(sort_name) is not None]
        absent = [o for o in hits if o.properties.get(sort_name) is None]
        present.sort(
            key=lambda o: _comparable(definitions[sort_name], o.properties[sort_name]),
            reverse=descending,
        )
        hits = present + absent
    if offset + limit > MAX_RESULTS and offset < len(hits):
        raise _bad(f"Search paging is limited to {MAX_RESULTS} results; narrow the filters")
    page = hits[offset : offset + limit]
    returned = list(dict.fromkeys([*names, *ALWAYS_RETURNED, LAST_MODIFIED[otype]]))
    answer: dict[str, Any] = {"total": len(hits), "results": [o.to_json(returned) for o in page]}
    if offset + limit < len(hits):
        answer["paging"] = {"next": {"after": str(offset + limit)}}
    return answer
