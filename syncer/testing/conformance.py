"""The connector conformance kit: what every destination must honour, in one fixture and a line.

syncer installs it as a pytest plugin (entry point ``pytest11``, :mod:`syncer.testing.
pytest_plugin`). An author overrides one fixture, ``syncer_connector``, returning a factory of
connectors bound to their emulator or sandbox, and subclasses :class:`ConnectorConformance` in a
test module (the class name must start with ``Test``)::

    from syncer.testing.conformance import ConnectorConformance
    from syncer.testing.kit import ConnectorFactory, EmulatorFaults

    @pytest.fixture
    def syncer_connector(acme_emulator):
        make = lambda: AcmeConnector(AcmeConfig(token=SecretStr("t"), base_url=acme_emulator.url))
        return ConnectorFactory(make, faults=EmulatorFaults(acme_emulator))

    class TestAcmeConformance(ConnectorConformance):
        pass

The tests run through the connector directly where the behaviour is the connector's (one result
per record, upsert by key, ``ensure`` idempotent, associations) and through the engine's plan,
write pipeline and sync state (:class:`syncer.testing.kit.EngineHarness`) where it is the
engine's with the connector's cooperation (a 429's Retry-After honoured, 5xx retried, a partial
failure mapped per record, an unchanged re-run sending nothing, removal modes). Fault tests need
the factory's ``faults`` (:class:`syncer.testing.kit.Faults`) and are skipped, with the reason,
when the emulator cannot inject the fault.

Settings are class attributes (``objects``, ``association_objects``, ``batch_cap``); hooks are
plain methods (``make_record``, ``oversized_field``, ``ensure_fields``, ``remote_count``,
``remote_fields``). Every test writes records with keys of its own, so one emulator may serve
them all. Tests (``test_*``) are not meant to be overridden.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from syncer.connectors.base import AssociationChange, Connector, WriteRecord, WriteResult
from syncer.connectors.registry import validate_connector
from syncer.engine.operations import association_op, record_op
from syncer.errors import ConfigError
from syncer.fields import FieldSpec, FieldType
from syncer.testing.conformance_engine import EngineConformance
from syncer.testing.kit import ConnectorFactory, EngineHarness, as_factory

__all__ = ["ConnectorConformance"]

_SECRET_WORDS = ("token", "secret", "password", "private_key", "api_key", "client_key")


class ConnectorConformance(EngineConformance):
    """Inherit to run the kit; see the module docstring. Settings and hooks may be overridden;
    tests (``test_*``) may not."""

    #: The objects the kit writes, each test once per object; empty: the first one declared.
    objects: ClassVar[tuple[str, ...]] = ()
    #: Largest batch the full-batch test sends (keeps suites against slow emulators quick).
    batch_cap: ClassVar[int] = 100
    #: (from_object, to_object) to test associations with; None skips that test.
    association_objects: ClassVar[tuple[str, str] | None] = None

    # --- collection and fixtures (the kit's; authors override ``syncer_connector`` only) ---

    @staticmethod
    def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
        """One run of each test per object of ``objects`` (pytest calls this on the class)."""
        objects = getattr(metafunc.cls, "objects", ())
        if objects and "conformance_object" in metafunc.fixturenames:
            metafunc.parametrize("conformance_object", list(objects), ids=list(objects))

    @pytest.fixture
    def conformance_factory(
        self, request: pytest.FixtureRequest, syncer_connector: object
    ) -> Iterator[ConnectorFactory]:
        """The author's factory; every connector it makes during the test is closed after."""
        factory = as_factory(syncer_connector, request.node.nodeid)
        made: list[Connector[Any]] = []

        def make() -> Connector[Any]:
            connector = factory()
            made.append(connector)
            for name in self._written_objects(connector):
                report = connector.ensure(name, self.ensure_fields(connector, name))
                assert not report.problems, f"ensure({name!r}) reported {report.problems}"
            return connector

        yield ConnectorFactory(make, factory.faults)
        for connector in made:
            connector.close()

    @pytest.fixture
    def connector(self, conformance_factory: ConnectorFactory) -> Connector[Any]:
        """A connector from the author's factory, its tested objects' fields ensured (as a run
        starts)."""
        return conformance_factory()

    @pytest.fixture
    def conformance_object(self, connector: Connector[Any]) -> str:
        """The object under test when ``objects`` is empty: the first one declared."""
        return next(iter(connector.objects))

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[EngineHarness]:
        """The engine's plan, write pipeline and sync state, over a SQLite state in tmp_path."""
        harness = EngineHarness(f"sqlite:///{tmp_path / 'conformance-state.db'}")
        yield harness
        harness.close()

    # --- hooks -------------------------------------------------------------------------------

    def make_record(
        self, connector: Connector[Any], object_name: str, key: str, version: int = 1
    ) -> WriteRecord:
        """Author hook: a record the destination accepts; ``version`` 2 must differ from 1 in
        some value. Default: every declared field filled with a plausible value of its type."""
        spec = connector.object_spec(object_name)
        payload = {name: _sample(f, key, version) for name, f in spec.fields.items()}
        return WriteRecord(key=key, changes=payload, payload=payload)

    def oversized_field(
        self, connector: Connector[Any], object_name: str
    ) -> tuple[str, int] | None:
        """Author hook: a text field and its length limit; None skips the oversized test.
        Default: the first declared text field with a ``max_length``."""
        spec = connector.object_spec(object_name)
        for name, f in spec.fields.items():
            if f.type in (FieldType.STRING, FieldType.TOKENS) and f.max_length:
                return name, f.max_length
        return None

    def remote_count(self, connector: Connector[Any], object_name: str) -> int | None:
        """Author hook: how many records the emulator holds for ``object_name``; None (the
        default) limits the duplicate checks to comparing remote ids."""
        return None

    def remote_fields(
        self, connector: Connector[Any], object_name: str, remote_id: str
    ) -> Mapping[str, Any] | None:
        """Author hook: the values the emulator holds for a record, by syncer's field names (a
        cleared field absent, None or empty); None (the default) skips the value checks."""
        return None

    def ensure_fields(self, connector: Connector[Any], object_name: str) -> Sequence[FieldSpec]:
        """Author hook: the fields ``ensure`` is given before the kit writes (as a run does).
        Default: the declared fields."""
        return list(connector.object_spec(object_name).fields.values())

    # --- the connector's own behaviour -------------------------------------------------------

    def test_declarations_are_valid(self, connector: Connector[Any]) -> None:
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

    def test_config_never_shows_secrets(self, connector: Connector[Any]) -> None:
        config = connector.config
        shown = f"{config!r} {config} {config.model_dump_json()}"
        for name in type(config).model_fields:
            value = getattr(config, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                assert value.get_secret_value() not in shown, f"config shows secret {name!r}"

    def test_write_returns_one_result_per_record_sent(
        self, connector: Connector[Any], conformance_object: str
    ) -> None:
        batch = self._records(connector, conformance_object, 5)
        results = connector.write(conformance_object, batch)
        self._assert_one_ok_result_each(batch, results)

    def test_a_full_batch_is_accepted(
        self, connector: Connector[Any], conformance_object: str
    ) -> None:
        batch = self._records(connector, conformance_object, self.batch_cap)
        self._assert_one_ok_result_each(batch, connector.write(conformance_object, batch))

    def test_writing_the_same_batch_twice_is_idempotent(
        self, connector: Connector[Any], conformance_object: str
    ) -> None:
        name = conformance_object
        batch, first = self._write_new(connector, name, 3)
        count = self.remote_count(connector, name)
        second = _remote_ids(connector.write(name, batch))
        assert second == first, "a second upsert of the same keys must find the same records"
        if count is not None:
            assert self.remote_count(connector, name) == count, "the second write duplicated"

    def test_a_second_write_of_a_key_updates_it(
        self, conformance_factory: ConnectorFactory, conformance_object: str
    ) -> None:
        """Upsert by key: a new connector (a re-run after a crash: no remote id known) writing
        changed values of the same keys updates those records, never creates others."""
        name = conformance_object
        first = conformance_factory()
        batch, ids = self._write_new(first, name, 2)
        count = self.remote_count(first, name)
        again = conformance_factory()
        changed = [self.make_record(again, name, r.key, version=2) for r in batch]
        results = again.write(name, changed)
        self._assert_one_ok_result_each(changed, results)
        assert _remote_ids(results) == ids, "the same keys must update, not add"
        if count is not None:
            assert self.remote_count(again, name) == count, "the update created records"
        for record in changed:
            held = self.remote_fields(again, name, str(ids[record.key]))
            if held is not None:
                for field_name, value in record.payload.items():
                    assert held.get(field_name) == value, f"{record.key}: {field_name} not updated"

    def test_update_with_the_remote_id_keeps_the_record(
        self, connector: Connector[Any], conformance_object: str
    ) -> None:
        name = conformance_object
        batch, first = self._write_new(connector, name, 2)
        again = [
            WriteRecord(r.key, r.changes, r.payload, remote_id=first[r.key], hints=r.hints)
            for r in batch
        ]
        assert _remote_ids(connector.write(name, again)) == first

    def test_ensure_is_idempotent(
        self, conformance_factory: ConnectorFactory, conformance_object: str
    ) -> None:
        """A new connector (a second run) ensuring the same fields creates none of them."""
        for connector in (conformance_factory(), conformance_factory()):
            fields = self.ensure_fields(connector, conformance_object)
            report = connector.ensure(conformance_object, fields)
            assert report.created == [], f"ensure created {report.created} a second time"
            assert not report.problems, report.problems

    def test_declared_associations_work_and_are_idempotent(self, connector: Connector[Any]) -> None:
        if not connector.capabilities.associations:
            pytest.skip("the connector declares no associations (the next test covers that)")
        if self.association_objects is None:
            pytest.skip("associations declared: set association_objects to test them")
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

    def test_undeclared_capabilities_are_never_called(self, connector: Connector[Any]) -> None:
        """The engine refuses, before any call, an association or an archive the connector
        does not declare; and what it declares, it implements."""
        caps = connector.capabilities
        name = next(iter(connector.objects))
        checks: list[tuple[bool, str, Callable[[], object]]] = [
            (caps.associations, "associate", lambda: association_op(connector)),
            (
                "archive" in caps.removal_modes,
                "archive",
                lambda: record_op(connector, name, "archive"),
            ),
        ]
        for declared, method, build in checks:
            overridden = getattr(type(connector), method) is not getattr(Connector, method)
            if declared:
                assert overridden, f"{method} is declared in capabilities but not implemented"
                build()
            else:
                with pytest.raises(ConfigError):
                    build()

    # --- helpers -----------------------------------------------------------------------------

    def _written_objects(self, connector: Connector[Any]) -> list[str]:
        """The objects a test may write: those under test and the association objects."""
        names = list(self.objects) or [next(iter(connector.objects))]
        if self.association_objects is not None and connector.capabilities.associations:
            names += [n for n in self.association_objects if n not in names]
        return names

    def _records(
        self, connector: Connector[Any], object_name: str, n: int, version: int = 1
    ) -> list[WriteRecord]:
        """``n`` records (capped at the connector's batch size) with keys new to this test."""
        n = min(n, connector.capabilities.max_batch)
        prefix = f"conf-{uuid.uuid4().hex[:10]}"
        keys = [f"{prefix}-{i:04d}" for i in range(n)]
        return [self.make_record(connector, object_name, key, version) for key in keys]

    def _write_new(
        self, connector: Connector[Any], object_name: str, n: int
    ) -> tuple[list[WriteRecord], dict[str, str | None]]:
        """``n`` new records (see :meth:`_records`) written once: them and their remote ids."""
        batch = self._records(connector, object_name, n)
        return batch, _remote_ids(connector.write(object_name, batch))

    @staticmethod
    def _assert_one_ok_result_each(
        batch: Sequence[WriteRecord], results: Sequence[WriteResult]
    ) -> None:
        keys = [r.key for r in results]
        assert sorted(keys) == sorted(r.key for r in batch), "one result per record sent"
        rejected = [(r.key, r.rejected) for r in results if not r.ok]
        assert not rejected, f"valid records were rejected: {rejected[:3]}"
        ids = [r.remote_id for r in results]
        assert all(ids), "every accepted record needs a remote id"
        assert len(set(ids)) == len(ids), "distinct keys must be distinct remote records"


def _remote_ids(results: Iterable[WriteResult]) -> dict[str, str | None]:
    """The remote id each key got, by key."""
    return {r.key: r.remote_id for r in results}


def _sample(spec: FieldSpec, key: str, version: int = 1) -> str:
    """A plausible value of ``spec``'s type for record ``key``, different per ``version``."""
    token = key.replace("-", "")[-12:]
    samples = {
        FieldType.EMAIL: f"{token}v{version}@example.com",
        FieldType.NUMBER: str(40 + version),
        FieldType.BOOL: "true" if version % 2 else "false",
        FieldType.DATE: f"2024-01-{version:02d}",
        FieldType.ENUM: spec.options[(version - 1) % len(spec.options)] if spec.options else "a",
        FieldType.TOKENS: f"t{token}v{version}",
    }
    value = samples.get(spec.type, f"conformance {key} v{version}")
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
