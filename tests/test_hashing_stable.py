"""The payload hash is a stored value: its text and digest never change between releases (a
changed hash re-sends every record once). Pinned digests, and the cached fast form held against
the form it replaced (keys sorted on every call)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncer.state import hashing
from syncer.state.hashing import canonical_text, payload_hash

# Computed by the release before the fast form was cached (syncer 50fe150).
PINNED: list[tuple[dict[str, object], str]] = [
    ({}, "cae66941d9efbd404e4d88758ea67670"),
    ({"a": "1"}, "b4feb303ba68581ff5140f67114e15e6"),
    ({"a": None}, "5a6115bd8a579b94aced09a031a53ac0"),
    (
        {"email": "a@b.example", "firstname": "Ann", "syncer_stage": "CUS", "lastname": None},
        "781a3834cd7cfb6f4f311e4d35d04ce5",
    ),
    ({"name": "Caf\u00e9", "z": ";a1xcus;"}, "bcd41235f8d215ed335f5b2ae613a836"),
    ({"n": 1}, "984530e49acf879ea2a3b7c3062fca65"),
    ({"k\x1fx": "v", "b": "c"}, "9362e481606d100fc3a4b95c5023b147"),
    ({"a": "x\x1dy", "b": None}, "7f260dbe5eee450e2169a2ff5810627b"),
    ({"\u00e9": "1", "a": "2"}, "826e86139a0d9ffcdc97de5892953d25"),
]


@pytest.mark.parametrize(("payload", "digest"), PINNED)
def test_the_hash_of_a_payload_is_what_it_always_was(
    payload: dict[str, object], digest: str
) -> None:
    assert payload_hash(payload) == digest
    assert payload_hash(dict(reversed(list(payload.items())))) == digest
    assert payload_hash(MappingProxyType(payload)) == digest


def _sorted_every_time(payload: Mapping[str, object]) -> str:
    """The fast form as it was computed before its keys part was cached: sort, join, check."""
    try:
        keys = sorted(payload)
        values: list[Any] = [payload[k] for k in keys]
        nones = values.count(None)
        if nones:
            values = [hashing._NONE if v is None else v for v in values]
        body = hashing._SEP.join(keys + values)
    except TypeError:
        return hashing._encode_mapping(payload)
    if keys and (
        body.count(hashing._SEP) != 2 * len(keys) - 1 or body.count(hashing._NONE) != nones
    ):
        return hashing._encode_mapping(payload)
    if not body.isascii():
        if not hashing._SEP.join(keys).isascii():
            return hashing._encode_mapping(payload)
        body = unicodedata.normalize("NFC", body)
    return body


_text = st.lists(
    st.sampled_from(["a", "b", "z", "_", "1", "\x1f", "\x1d", "\u00e9", "e\u0301", "\u0301", "{"]),
    max_size=4,
).map("".join)
_values = st.one_of(st.none(), _text, st.integers(-5, 5), st.booleans())


@given(st.dictionaries(_text, _values, max_size=6))
def test_the_cached_fast_form_is_the_form_sorted_every_time(payload: dict[str, object]) -> None:
    try:
        expected = _sorted_every_time(payload)
    except ValueError:  # keys equal after normalisation: an error either way
        with pytest.raises(ValueError, match="same field"):
            canonical_text(payload)
        return
    assert canonical_text(payload) == expected
    assert canonical_text(dict(reversed(list(payload.items())))) == expected
