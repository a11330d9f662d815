"""Every error syncer raises, grouped by what happens next.

=====================  ==============================================================
class                  what the engine does
=====================  ==============================================================
``ConfigError``        stop before anything is written; tell the user what to fix
``BadInputError``      stop (or skip the row with ``--skip-bad``); name file, line, field
``RetriableError``     back off (honouring ``retry_after``) and try the same request again
``RecordRejected``     record the reason in ``sync_errors``, go on with the other records
``LeaseHeldError``     another run owns the destination: wait or stop, write nothing
``FatalError``         stop the run; state already committed stays committed
=====================  ==============================================================

Any other exception is a bug: fatal, never retried.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input, located as precisely as we know."""

    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    key: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
        elif self.line is not None:
            where = f"line {self.line}"
        parts = [where] if where else []
        if self.key is not None:
            parts.append(f"record {self.key!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
        text = ": ".join([", ".join(parts), self.message]) if parts else self.message
        return f"{text}. {self.hint}" if self.hint else text


class SyncerError(Exception):
    """Base class of every error syncer raises on purpose."""


class _ProblemsError(SyncerError):
    """An error that carries every problem found, so the user fixes them all at once."""

    def __init__(
        self, problems: Problem | str | Sequence[Problem | str], *, summary: str = ""
    ) -> None:
        if isinstance(problems, (str, Problem)):
            problems = [problems]
        self.problems: tuple[Problem, ...] = tuple(
            p if isinstance(p, Problem) else Problem(p) for p in problems
        )
        self.summary = summary
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [str(p) for p in self.problems]
        if len(lines) == 1 and not self.summary:
            return lines[0]
        head = self.summary or f"{len(lines)} problems"
        shown = lines[:50]
        more = len(lines) - len(shown)
        tail = [f"... and {more} more"] if more else []
        return "\n  ".join([head + ":", *shown, *tail])


class ConfigError(_ProblemsError):
    """Configuration (syncer.yaml, mappings, connector settings) is wrong. Nothing was written."""


class BadInputError(_ProblemsError):
    """Input data is wrong (a loaded file, a store row). Nothing was written."""


class UnknownStageError(BadInputError):
    """A stage value that is not on the ladder, located by user, account and where it came from.

    ``column`` is the store column it was read from (``memberships.stage``): the resolver rejects
    that one record and the run goes on. ``None``: the sync state's marks hold a stage the
    configured ladder no longer has — a configuration problem that stops the run."""

    def __init__(
        self,
        problems: Problem | str | Sequence[Problem | str],
        *,
        summary: str = "",
        column: str | None = None,
    ) -> None:
        super().__init__(problems, summary=summary)
        self.column = column


class RetriableError(SyncerError):
    """A transient failure: the same request may succeed later (429, 5xx, timeouts, locks)."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class RecordRejected(SyncerError):
    """The destination (or the formatter) refused one record; the others go on."""

    def __init__(self, key: str, reason: str, *, field: str | None = None) -> None:
        super().__init__(f"record {key!r} rejected: {reason}")
        self.key = key
        self.reason = reason
        self.field = field


class BatchRejected(SyncerError):
    """The destination refused a whole batch with a 4xx; the engine bisects to find the culprits."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LeaseHeldError(SyncerError):
    """Another run holds the destination's lease; this run writes nothing."""

    def __init__(
        self,
        destination: str,
        holder: str,
        expires_at: object,
        *,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        where = f"pid {pid} on {host}, " if host is not None and pid is not None else ""
        super().__init__(
            f"destination {destination!r} is being synced by run {holder} ({where}lease until "
            f"{_when(expires_at)}); wait for it to finish (`syncer run --wait SECONDS` waits), or "
            f"if that run died, its lease lapses by then or `syncer lease release -d "
            f"{destination}` releases it now"
        )
        self.destination = destination
        self.holder = holder
        self.expires_at = expires_at
        self.host = host
        self.pid = pid

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its fields when it crosses a process boundary (a Dask worker's partition
        # fails with it), since its constructor does not take the message.
        return _rebuild, (type(self), self.args, self.__dict__)


def _when(at: object) -> str:
    """A lease's expiry as people read it: to the second, in UTC."""
    return at.isoformat(sep=" ", timespec="seconds") if isinstance(at, datetime) else str(at)


def _rebuild(cls: type[SyncerError], args: tuple[Any, ...], fields: dict[str, Any]) -> SyncerError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(fields)
    return exc


class LeaseLostError(LeaseHeldError):
    """This run's lease expired and another run took it (or an operator released it) while this
    run was working: it must stop writing. State already committed stays committed."""

    def __init__(
        self, destination: str, lost_by: str, holder: str | None, expires_at: object
    ) -> None:
        SyncerError.__init__(
            self,
            f"run {lost_by} lost its lease on destination {destination!r} "
            + (f"to run {holder} (lease until {_when(expires_at)})" if holder else "(released)")
            + "; it stopped writing. Either an operator released it (`syncer lease release "
            "--force`) or its heartbeat could not renew it in time (this process stalled, or "
            "the state database was unreachable, for longer than the lease lasts); the next "
            "run sends what this one did not",
        )
        self.destination = destination
        self.holder = holder or ""
        self.expires_at = expires_at
        self.lost_by = lost_by
        self.host = None
        self.pid = None


class LeaseReleaseRefused(LeaseHeldError):
    """An operator asked to release a lease whose holder may be alive; nothing was released."""

    def __init__(self, destination: str, holder: str, expires_at: object, reason: str) -> None:
        SyncerError.__init__(
            self,
            f"not releasing the lease on destination {destination!r}: run {holder} holds it "
            f"until {_when(expires_at)} and {reason}. If it died, its lease lapses by then; to "
            "release it now anyway (the run stops writing at its next renewal): "
            f"`syncer lease release -d {destination} --force`",
        )
        self.destination = destination
        self.holder = holder
        self.expires_at = expires_at
        self.host = None
        self.pid = None


class FatalError(SyncerError):
    """Stop the run: auth failure, quota exhausted for the day, destination in maintenance."""


class RetriesExhausted(FatalError):
    """A transient failure outlasted the engine's retries: this run stops, but a later run may
    well succeed, so a scheduler (the Prefect flow's task retries) may try the run again."""


def combine(
    problems: Iterable[Problem], cls: type[_ProblemsError] = BadInputError, summary: str = ""
) -> None:
    """Raise ``cls`` with all ``problems`` if there are any."""
    found = list(problems)
    if found:
        raise cls(found, summary=summary)
