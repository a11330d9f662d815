"""What ``syncer load`` reports: per file and in total."""

from __future__ import annotations

from dataclasses import dataclass, field

from syncer.errors import Problem


@dataclass(slots=True)
class FileReport:
    """What one input file did: rows read, records written, rows skipped or ignored."""

    path: str
    kind: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    ignored: int = 0  # Segment calls syncer has no use for


@dataclass(slots=True)
class LoadReport:
    """The outcome of :func:`load_paths`: one :class:`FileReport` per file, skipped rows."""

    files: list[FileReport]
    skipped: list[Problem] = field(default_factory=list)
    tables: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, what: str) -> int:
        """The sum of one :class:`FileReport` counter (``"rows"``, ``"inserted"``, ...)."""
        return sum(int(getattr(f, what)) for f in self.files)
