"""The connector conformance suite: what every destination plugin must honour, in a few lines.

A plugin author subclasses :class:`ConnectorConformance` in a test module (the class name must
start with ``Test`` for pytest to collect it) and provides a ``connector`` fixture building the
connector against their emulator::

    from syncer.testing.conformance import ConnectorConformance

    class TestAcmeConformance(ConnectorConformance):
        object_name = "contacts"

        @pytest.fixture
        def connector(self, acme_emulator):
            connector = AcmeConnector(AcmeConfig(host=acme_emulator.url, token="test"))
            yield connector
            connector.close()

Every test writes records with keys unique to the test, so one emulator may serve them all.
Overridable hooks (plain methods): :meth:`make_record` (a valid record for your destination),
:meth:`oversized_field`, :meth:`remote_count` (count records on the emulator, to prove no
duplicates), :meth:`ensure_fields`, and the ``association_objects`` class attribute.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import ClassVar

import pytest
from pydantic import SecretStr

from syncer.connectors.base import (
    AssociationChange,
    Connector,
    WriteRecord,
    WriteResult,
)
from syncer.connectors.registry import validate_connector
from syncer.engine.operations import apply_records
from syncer.fields import FieldSpec, FieldType
from syncer.ratelimit import RateLimiter
from syncer.retry import RetryPolicy

__all__ = ["ConnectorConformance"]

_SECRET_WORDS = ("token", "secret", "password", "private_key", "api_key", "client_key")


class ConnectorConformance:
    """Inherit to run the suite; see the module docstring. Hooks may be overridden; tests
    (``test_*``) should not be."""

    #: The object the suite writes; None: the first one the connector declares.
    object_name: ClassVar[str | None] = None
    #: Largest batch the full-batch test sends (keeps suites against slow emulators quick).
    batch_cap: ClassVar[int] = 100
    #: (from_object, to_object) to test associations with; None skips that test.
    association_objects: ClassVar[tuple[str, str] | None] = None

    # --- hooks ---------------------------------------------------------------------------

    @pytest.fixture
    def connector(self) -> Connector:
        """Author hook: override with a fixture yielding your connector against your emulator."""
        pytest.fail(f"{type(self).__name__} must define a `connector` fixture")

    def target(self, connector: Connector) -> str:
        """The object under test."""
        return self.object_name or next(iter(connector.objects))

    def make_record(self, connector: Connector, object_name: str, key: str) -> WriteRecord:
        """Author hook: a record the destination accepts. Default: every declared field filled
        with a plausible value of its type."""
        spec = connector.object_spec(object_name)
        payload = {name: _sample(f, key) for name, f in spec.fields.items()}
        return WriteRecord(key=key, changes=payload, payload=payload)

    def oversized_field(self, connector: Connector, object_name: str) -> tuple[str, int] | None:
        """Author hook: a text field and its length limit; None skips the oversized test.
        Default: the first declared text field with a ``max_length``."""
        spec = connector.object_spec(object_name)
        for name, f in spec.fields.items():
            if f.type in (FieldType.STRING, FieldType.TOKENS) and f.max_length:
                return name, f.max_length
        return None

    def remote_count(self, connector: Connector, object_name: str) -> int | None:
        """Author hook: how many records the emulator holds for ``object_name``; None (the
        default) limits the duplicate check to comparing remote ids."""
        return None

    def ensure_fields(self, connector: Connector, object_name: str) -> Sequence[FieldSpec]:
        """Author hook: the fields ``ensure`` is tested with. Default: the declared fields."""
        return list(connector.object_spec(object_name).fields.values())

    # --- the suite -----------------------------------------------------------------------

    def test_declarations_are_valid(self, connector: Connector) -> None:
        cls = type(connector)
        validate_connector(cls, connector.name, f"{cls.__module__}:{cls.__qualname__}")
        caps = connector.capabilities
        for name, spec in connector.objects.items():
            assert spec.name == name, f"objects[{name!r}] is declared with name {spec.name!r}"
            unknown = set(spec.after) - set(connector.objects)
            assert not unknown, f"object {name!r} comes after unknown objects {sorted(unknown)}"
        if caps.rate_limit is not None:
            assert caps.rate_limit.requests >= 1
            assert caps.rate_limit.per_seconds > 0
        if caps.associations:
            assert caps.association_batch >= 1
        for field_name, info in cls.config_model.model_fields.items():
            if any(word in field_name.lower() for word in _SECRET_WORDS):
                assert "SecretStr" in str(info.annotation), (
                    f"config field {field_name!r} looks like a secret: declare it as SecretStr"
                )

    def test_config_never_shows_secrets(self, connector: Connector) -> None:
        config = connector.config
        shown = f"{config!r} {config} {config.model_dump_json()}"
        for name in type(config).model_fields:
            value = getattr(config, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                assert value.get_secret_value() not in shown, f"config shows secret {name!r}"

    def test_write_returns_one_result_per_key(self, connector: Connector) -> None:
        name = self.target(connector)
        batch = self._records(connector, name, min(5, connector.capabilities.max_batch))
        results = connector.write(name, batch)
        self._assert_one_ok_result_each(batch, results)

    def test_a_full_batch_is_accepted(self, connector: Connector) -> None:
        name = self.target(connector)
        size = min(connector.capabilities.max_batch, self.batch_cap)
        batch = self._records(connector, name, size)
        self._assert_one_ok_result_each(batch, connector.write(name, batch))

    def test_writing_the_same_batch_twice_is_idempotent(self, connector: Connector) -> None:
        name = self.target(connector)
        batch = self._records(connector, name, min(3, connector.capabilities.max_batch))
        first = {r.key: r.remote_id for r in connector.write(name, batch)}
        count = self.remote_count(connector, name)
        second = {r.key: r.remote_id for r in connector.write(name, batch)}
        assert second == first, "a second upsert of the same keys must find the same records"
        if count is not None:
            assert self.remote_count(connector, name) == count, "the second write duplicated"

    def test_update_with_the_remote_id_keeps_the_record(self, connector: Connector) -> None:
        name = self.target(connector)
        batch = self._records(connector, name, min(2, connector.capabilities.max_batch))
        first = {r.key: r.remote_id for r in connector.write(name, batch)}
        again = [
            WriteRecord(r.key, r.changes, r.payload, remote_id=first[r.key], hints=r.hints)
            for r in batch
        ]
        assert {r.key: r.remote_id for r in connector.write(name, again)} == first

    def test_an_oversized_value_is_rejected_per_record_not_per_batch(
        self, connector: Connector
    ) -> None:
        name = self.target(connector)
        found = self.oversized_field(connector, name)
        if found is None:
            pytest.skip("no text field with a declared length limit (override oversized_field)")
        field_name, limit = found
        size = min(3, connector.capabilities.max_batch)
        if size < 2:
            pytest.skip("max_batch is 1: every refusal is per record")
        batch = self._records(connector, name, size)
        bad = batch[1]
        payload = {**bad.payload, field_name: "x" * (limit + 1)}
        changes = {**bad.changes, field_name: "x" * (limit + 1)}
        batch[1] = WriteRecord(bad.key, changes, payload, hints=bad.hints)
        answered: list[WriteResult] = []
        apply_records(
            connector,
            name,
            batch,
            on_results=answered.extend,
            limiter=RateLimiter(connector.capabilities.rate_limit),
            retry=RetryPolicy(max_attempts=5, base=0.05, cap=1.0, deadline=60.0),
        )
        by_key = {r.key: r for r in answered}
        assert set(by_key) == {r.key for r in batch}
        assert not by_key[bad.key].ok, "the oversized record must be rejected"
        assert by_key[bad.key].rejected, "a rejection must carry the destination's reason"
        others = [by_key[r.key] for r in batch if r.key != bad.key]
        assert all(r.ok and r.remote_id for r in others), "the other records must land"

    def test_ensure_is_idempotent(self, connector: Connector) -> None:
        name = self.target(connector)
        fields = self.ensure_fields(connector, name)
        first = connector.ensure(name, fields)
        assert not first.problems, first.problems
        second = connector.ensure(name, fields)
        assert second.created == [], f"ensure created {second.created} a second time"
        assert not second.problems, second.problems

    def test_associations_are_idempotent(self, connector: Connector) -> None:
        if not connector.capabilities.associations or self.association_objects is None:
            pytest.skip("no associations declared (set association_objects to test them)")
        from_object, to_object = self.association_objects
        source = self._records(connector, from_object, 1)[0]
        target = self._records(connector, to_object, 1)[0]
        to_id = connector.write(to_object, [target])[0].remote_id
        from_id = connector.write(from_object, [source])[0].remote_id
        assert from_id
        assert to_id
        change = AssociationChange(from_object, source.key, from_id, to_object, target.key, to_id)
        for attempt in (change, change, _removal(change), _removal(change)):
            (result,) = connector.associate([attempt])
            assert result.ok, f"{attempt}: {result.rejected}"
            assert result.change == attempt

    # --- helpers -------------------------------------------------------------------------

    def _records(self, connector: Connector, object_name: str, n: int) -> list[WriteRecord]:
        prefix = f"conf-{uuid.uuid4().hex[:10]}"
        return [self.make_record(connector, object_name, f"{prefix}-{i:04d}") for i in range(n)]

    @staticmethod
    def _assert_one_ok_result_each(
        batch: Sequence[WriteRecord], results: Sequence[WriteResult]
    ) -> None:
        keys = [r.key for r in results]
        assert sorted(keys) == sorted(r.key for r in batch), "one result per input key"
        rejected = [(r.key, r.rejected) for r in results if not r.ok]
        assert not rejected, f"valid records were rejected: {rejected[:3]}"
        ids = [r.remote_id for r in results]
        assert all(ids), "every accepted record needs a remote id"
        assert len(set(ids)) == len(ids), "distinct keys must be distinct remote records"


def _sample(spec: FieldSpec, key: str) -> str:
    """A plausible value of ``spec``'s type for record ``key``."""
    token = key.replace("-", "")[-12:]
    samples = {
        FieldType.EMAIL: f"{token}@example.com",
        FieldType.NUMBER: "42",
        FieldType.BOOL: "true",
        FieldType.DATE: "2024-01-31",
        FieldType.ENUM: spec.options[0] if spec.options else "a",
        FieldType.TOKENS: f"t{token}",
    }
    value = samples.get(spec.type, f"conformance {key}")
    return value[: spec.max_length] if spec.max_length else value


def _removal(change: AssociationChange) -> AssociationChange:
    return AssociationChange(
        change.from_object,
        change.from_key,
        change.from_remote_id,
        change.to_object,
        change.to_key,
        change.to_remote_id,
        change.kind,
        remove=True,
    )
