"""The conformance kit's tests that run through the engine: plan, write pipeline, sync state.

What is tested here is the engine's behaviour with the connector's cooperation: the connector
raises :class:`~syncer.errors.RetriableError` with the destination's ``Retry-After`` and the
engine waits and retries; it returns the destination's per-record refusals and the engine
records them and sends them again next run; it returns stable remote ids and a re-run sends
nothing; it honours the removal modes it declares. :class:`EngineConformance` is a mixin of
:class:`syncer.testing.conformance.ConnectorConformance`; use that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pytest

from syncer.connectors.base import Connector, WriteRecord, WriteResult
from syncer.engine.operations import apply_records
from syncer.engine.pipeline import NO_RESULT
from syncer.testing.kit import ConnectorFactory, EngineHarness, Fault, FaultName, HarnessRun

__all__ = ["EngineConformance"]


class _Suite(Protocol):
    """What the engine tests use of the suite (its hooks and helpers)."""

    def make_record(
        self, connector: Connector[Any], object_name: str, key: str, version: int = 1
    ) -> WriteRecord: ...
    def oversized_field(
        self, connector: Connector[Any], object_name: str
    ) -> tuple[str, int] | None: ...
    def remote_fields(
        self, connector: Connector[Any], object_name: str, remote_id: str
    ) -> Mapping[str, Any] | None: ...
    def _records(
        self, connector: Connector[Any], object_name: str, n: int, version: int = 1
    ) -> list[WriteRecord]: ...
    @staticmethod
    def _assert_one_ok_result_each(
        batch: Sequence[WriteRecord], results: Sequence[WriteResult]
    ) -> None: ...


class EngineConformance:
    """The engine-side tests of the kit (a mixin: see the module docstring)."""

    def test_an_unchanged_rerun_sends_nothing(
        self: _Suite,
        conformance_factory: ConnectorFactory,
        conformance_object: str,
        harness: EngineHarness,
    ) -> None:
        """A second run, with a new connector, of a source the destination acknowledged
        calls the connector not once."""
        name = conformance_object
        source = self._records(conformance_factory(), name, 3)
        first = harness.run(conformance_factory(), name, source)
        assert first.counts.create == len(source)
        self._assert_one_ok_result_each(source, list(first.results.values()))
        again = harness.run(conformance_factory(), name, source)
        assert again.counts.unchanged == len(source), again.counts
        assert again.connector_calls == 0, "an unchanged re-run called the connector"

    def test_an_oversized_value_is_rejected_per_record_not_per_batch(
        self: _Suite, connector: Connector[Any], conformance_object: str, harness: EngineHarness
    ) -> None:
        name = conformance_object
        found = self.oversized_field(connector, name)
        if found is None:
            pytest.skip("no text field with a declared length limit (override oversized_field)")
        if connector.capabilities.max_batch < 2:
            pytest.skip("max_batch is 1: every refusal is per record")
        field_name, limit = found
        batch = self._records(connector, name, 3)
        bad = batch[1]
        too_long = "x" * (limit + 1)
        payload = {**bad.payload, field_name: too_long}
        batch[1] = WriteRecord(bad.key, {**bad.changes, field_name: too_long}, payload)
        answered: list[WriteResult] = []
        apply_records(
            connector,
            name,
            batch,
            on_results=answered.extend,
            limiter=harness.limiter(connector),
            retry=harness.retry,
        )
        by_key = {r.key: r for r in answered}
        assert set(by_key) == {r.key for r in batch}, "one result per record sent"
        assert not by_key[bad.key].ok, "the oversized record must be rejected"
        assert by_key[bad.key].rejected, "a rejection must carry the destination's reason"
        others = [by_key[r.key] for r in batch if r.key != bad.key]
        assert all(r.ok and r.remote_id for r in others), "the other records must land"

    def test_a_partial_failure_is_mapped_per_record(
        self: _Suite,
        conformance_factory: ConnectorFactory,
        conformance_object: str,
        harness: EngineHarness,
    ) -> None:
        """Refused records are rejected with the destination's reason, the others land; the
        next run sends the refused ones again, and only those."""
        name = conformance_object
        connector = conformance_factory()
        if connector.capabilities.max_batch < 2:
            pytest.skip("max_batch is 1: a batch cannot fail in part")
        source = self._records(connector, name, 4)
        _inject(conformance_factory, "partial_failure", name)
        run = harness.run(connector, name, source)
        assert sorted(run.results) == sorted(r.key for r in source), "one result per record"
        refused = {k: r for k, r in run.results.items() if not r.ok}
        assert refused, "the injected partial failure refused no record"
        assert len(refused) < len(source), "a partial failure refused the whole batch"
        for key, result in refused.items():
            assert result.rejected != NO_RESULT, (
                f"{key}: no result returned for a refused record; return it rejected with the "
                "destination's reason"
            )
        assert all(r.remote_id for r in run.results.values() if r.ok)
        again = harness.run(conformance_factory(), name, source)
        assert again.counts.create == len(refused), "the refused records are sent again"
        assert again.counts.unchanged == len(source) - len(refused)
        assert all(r.ok for r in again.results.values()), again.results

    def test_a_429_with_retry_after_is_honoured(
        self: _Suite,
        conformance_factory: ConnectorFactory,
        conformance_object: str,
        harness: EngineHarness,
    ) -> None:
        """A 429 is retried by the engine after at least the wait its ``Retry-After`` asked
        for, and the records land."""
        fault, run = _faulted_run(
            self, conformance_factory, "rate_limited", conformance_object, harness
        )
        assert run.stats.retries >= 1, (
            "the 429 was not retried by the engine: raise RetriableError (the HTTP base does) "
            "instead of retrying inside the connector"
        )
        waited = max(harness.clock.sleeps, default=0.0)
        assert waited >= fault.retry_after, (
            f"the engine waited {waited:g} s, not the {fault.retry_after} s of Retry-After: "
            "set RetriableError.retry_after from the answer"
        )

    def test_a_5xx_is_retried(
        self: _Suite,
        conformance_factory: ConnectorFactory,
        conformance_object: str,
        harness: EngineHarness,
    ) -> None:
        """5xx answers are retried by the engine, once each, and the records land."""
        fault, run = _faulted_run(
            self, conformance_factory, "server_error", conformance_object, harness, count=2
        )
        assert run.stats.retries >= fault.count, (
            f"{run.stats.retries} retries for {fault.count} answers {fault.status}: raise "
            "RetriableError and let the engine retry"
        )

    def test_clear_removal_empties_the_fields(
        self: _Suite,
        conformance_factory: ConnectorFactory,
        conformance_object: str,
        harness: EngineHarness,
    ) -> None:
        """``removal: clear``: a record gone from the source is written with its fields None
        (the key kept, and the fields the object declares ``required`` left with their last
        value); back in the source, it is sent whole again onto the same record."""
        name = conformance_object
        connector = conformance_factory()
        if "clear" not in connector.capabilities.removal_modes:
            pytest.skip("the connector does not declare the removal mode 'clear'")
        kept, gone = self._records(connector, name, 1) + self._records(connector, name, 1)
        if not any(v is not None for v in gone.payload.values()):
            pytest.skip("make_record fills no field, so there is nothing to clear")
        first = harness.run(connector, name, [kept, gone], removal="clear")
        remote_id = first.results[gone.key].remote_id
        cleared = harness.run(conformance_factory(), name, [kept], removal="clear")
        assert cleared.counts.remove == 1, cleared.counts
        assert cleared.results[gone.key].ok, cleared.results[gone.key].rejected
        held = self.remote_fields(connector, name, str(remote_id))
        if held is not None:
            required = connector.object_spec(name).required_fields
            left = {
                k: v
                for k, v in held.items()
                if k in gone.payload and k not in required and v not in (None, "")
            }
            assert not left, f"clear left values behind: {left}"
            emptied = sorted(
                k for k in required if gone.payload.get(k) and held.get(k) in (None, "")
            )
            assert not emptied, f"clear emptied required fields {emptied}: leave them as they are"
        back = harness.run(conformance_factory(), name, [kept, gone], removal="clear")
        assert back.counts.update == 1, back.counts
        assert back.results[gone.key].ok, back.results[gone.key].rejected
        assert back.results[gone.key].remote_id in (None, remote_id), "it came back elsewhere"

    def test_archive_removal_archives(
        self: _Suite,
        conformance_factory: ConnectorFactory,
        conformance_object: str,
        harness: EngineHarness,
    ) -> None:
        """``removal: archive``: the engine archives a record gone from the source by its
        remote id; archiving it again ("already gone") succeeds; back in the source, it lands."""
        name = conformance_object
        connector = conformance_factory()
        if "archive" not in connector.capabilities.removal_modes:
            pytest.skip("the connector does not declare the removal mode 'archive'")
        kept, gone = self._records(connector, name, 1) + self._records(connector, name, 1)
        harness.run(connector, name, [kept, gone], removal="archive")
        archived = harness.run(conformance_factory(), name, [kept], removal="archive")
        assert archived.counts.remove == 1, archived.counts
        assert archived.results[gone.key].ok, archived.results[gone.key].rejected
        remote_id = harness.remote_id(name, gone.key)
        again = conformance_factory().archive(
            name, [WriteRecord(gone.key, {}, gone.payload, remote_id=remote_id)]
        )
        assert [r.key for r in again] == [gone.key], "one result per record sent"
        assert again[0].ok, f"archiving an archived record must succeed: {again[0].rejected}"
        back = harness.run(conformance_factory(), name, [kept, gone], removal="archive")
        assert back.results[gone.key].ok, back.results[gone.key].rejected


def _faulted_run(
    suite: _Suite,
    factory: ConnectorFactory,
    name: FaultName,
    object_name: str,
    harness: EngineHarness,
    *,
    count: int = 1,
) -> tuple[Fault, HarnessRun]:
    """Two records written through the engine with ``name`` injected just before (after the
    connector's own setup, which must not meet it); each must land in the end."""
    connector = factory()
    source = suite._records(connector, object_name, 2)
    fault = _inject(factory, name, object_name, count=count)
    run = harness.run(connector, object_name, source)
    suite._assert_one_ok_result_each(source, list(run.results.values()))
    return fault, run


def _inject(factory: ConnectorFactory, name: FaultName, object_name: str, count: int = 1) -> Fault:
    """Switch a fault on in the author's emulator, or skip the test saying why."""
    if factory.faults is None:
        pytest.skip(
            f"fault {name!r}: the syncer_connector factory has no faults (return "
            "ConnectorFactory(make, faults=...) to run the fault tests)"
        )
    fault = Fault(name, object_name, count=count)
    if not factory.faults.inject(fault):
        pytest.skip(f"fault {name!r}: this emulator cannot inject it")
    return fault
