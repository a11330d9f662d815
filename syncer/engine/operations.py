"""The writes a connector offers, as :class:`~syncer.engine.pipeline.Operation` values.

Upserts (``write``), removals by archiving (``archive``; a ``clear`` removal is an upsert of
empty fields), bulk jobs (``write_bulk``) and association changes (``associate``) differ only in
the connector method they call, their batch size and how an item and a result are keyed — the
loop, and so every guarantee, is :func:`syncer.engine.pipeline.apply`.

The ``apply_*`` helpers run one operation over an iterable with a limiter and a retry policy:
what the engine's run does per object, and what the conformance kit and benchmarks call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Literal, Unpack

from syncer.connectors.base import (
    AssociationChange,
    AssociationResult,
    Connector,
    WriteRecord,
    WriteResult,
)
from syncer.engine.pipeline import Answer, ApplyOptions, ApplyStats, I, Operation, R, apply
from syncer.errors import ConfigError

__all__ = [
    "RecordOp",
    "apply_records",
    "archive_records",
    "associate_changes",
    "association_op",
    "record_op",
]


#: The record writes a connector has: upsert batches, archive batches, bulk jobs.
RecordOp = Literal["write", "archive", "bulk"]


def record_op(
    connector: Connector[Any], object_name: str, kind: RecordOp = "write"
) -> Operation[WriteRecord, WriteResult]:
    """An upsert, archive or bulk write of ``object_name`` records through ``connector``.
    ConfigError for an object the connector lacks, or archiving it does not declare."""
    connector.object_spec(object_name)
    size = connector.capabilities.max_batch
    call: Callable[[Sequence[WriteRecord]], Answer[WriteResult]]
    if kind == "write":
        call = lambda batch: Answer(connector.write(object_name, batch))  # noqa: E731
    elif kind == "archive":
        if "archive" not in connector.capabilities.removal_modes:
            modes = ", ".join(sorted(connector.capabilities.removal_modes))
            raise ConfigError(
                f"connector {connector.name!r} cannot archive records (its removal modes: "
                f"{modes}); choose one of those for this destination"
            )
        call = lambda batch: Answer(connector.archive(object_name, batch))  # noqa: E731
    else:
        size = connector.bulk_batch_size

        def call(batch: Sequence[WriteRecord]) -> Answer[WriteResult]:
            outcome = connector.write_bulk(object_name, batch)
            return Answer(outcome.results, outcome.requests)

    return Operation(
        what=f"{connector.name} {kind} {object_name}",
        connector=connector.name,
        batch_size=size,
        key=_record_key,
        result_key=_record_key,
        call=call,
        reject=_reject_record,
        ok=_ok,
    )


def association_op(connector: Connector[Any]) -> Operation[AssociationChange, AssociationResult]:
    """Association creates and removals through ``connector.associate``, in batches of
    ``capabilities.association_batch``. ConfigError if the connector has no associations."""
    if not connector.capabilities.associations:
        raise ConfigError(f"connector {connector.name!r} does not support associations")
    return Operation(
        what=f"{connector.name} associate",
        connector=connector.name,
        batch_size=connector.capabilities.association_batch,
        key=_pair_key,
        result_key=lambda result: _pair_key(result.change),
        call=lambda batch: Answer(connector.associate(batch)),
        reject=lambda change, reason, _field: AssociationResult(change, rejected=reason),
        ok=_ok,
    )


def apply_records(
    connector: Connector[Any],
    object_name: str,
    records: Iterable[WriteRecord],
    *,
    kind: RecordOp = "write",
    **options: Unpack[ApplyOptions[WriteResult]],
) -> ApplyStats:
    """Upsert (or archive, or bulk-write) ``records`` into ``object_name``; ``options`` are
    :func:`~syncer.engine.pipeline.apply`'s (``on_results``, ``limiter``, ``retry``,
    ``concurrency``, ``progress``)."""
    return _run(connector, record_op(connector, object_name, kind), records, options)


def archive_records(
    connector: Connector[Any],
    object_name: str,
    records: Iterable[WriteRecord],
    **options: Unpack[ApplyOptions[WriteResult]],
) -> ApplyStats:
    """Archive ``records`` (removed from the source): :func:`apply_records` with ``archive``."""
    return apply_records(connector, object_name, records, kind="archive", **options)


def associate_changes(
    connector: Connector[Any],
    changes: Iterable[AssociationChange],
    **options: Unpack[ApplyOptions[AssociationResult]],
) -> ApplyStats:
    """Create or remove associations; one pair (from, to) appears at most once per batch.
    ``options`` as for :func:`apply_records`."""
    return _run(connector, association_op(connector), changes, options)


def _run(
    connector: Connector[Any],
    op: Operation[I, R],
    items: Iterable[I],
    options: ApplyOptions[R],
) -> ApplyStats:
    # The destination's rate-limit headers reach the caller's limiter.
    connector.set_rate_observer(options["limiter"].observe)
    return apply(op, items, **options)


def _record_key(item: WriteRecord | WriteResult) -> Hashable:
    return item.key


def _ok(result: WriteResult | AssociationResult) -> bool:
    return result.ok


def _reject_record(record: WriteRecord, reason: str, field: str | None) -> WriteResult:
    return WriteResult(record.key, rejected=reason, field=field)


def _pair_key(change: AssociationChange) -> tuple[str, str, str, str]:
    return (change.from_object, change.from_key, change.to_object, change.to_key)
