"""``syncer load``: validate every input file, then write them all in one transaction.

Two passes keep memory bounded by the number of distinct keys, not the size of the input:

1. *Validate*: read every file, collect every problem (bad values, duplicate keys within a
   file, memberships and identities pointing at a user or account that is neither in the store
   nor in this load). If any problem is found and ``skip_bad`` is off, nothing is written.
2. *Write*: read the files again, table by table (accounts, users, memberships, identities,
   whatever the argument order), and upsert in batches inside one transaction: a failure
   anywhere leaves the store as it was.

Each batch reads the stored rows of its keys, applies the patches (see
:mod:`syncer.store.values`) and writes only the rows that are new or changed, so loading the
same files twice writes nothing and the report counts inserted, updated and unchanged records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from syncer.errors import BadInputError, Problem
from syncer.store.reports import FileReport, LoadReport
from syncer.store.rules import LoadRules
from syncer.store.sources import (
    CSV_SUFFIXES,
    JSONL_SUFFIXES,
    KINDS,
    SEGMENT,
    TABLE_KINDS,
    Source,
    SourceError,
    kind_from_name,
)
from syncer.store.triggers import PreStamp
from syncer.store.values import SPECS, ParsedRow, TableSpec
from syncer.store.writer import BatchWriter, stored_keys

DEFAULT_BATCH_SIZE = 2000
Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase ``"reading"`` counts bytes, ``"writing"`` records."""


def expand_sources(
    paths: Sequence[Path], kind: str | None = None, rules: LoadRules | None = None
) -> list[Source]:
    """The files to load, in load order, each checked against ``rules`` (default:
    :meth:`LoadRules.default`); :class:`BadInputError` naming every unusable path."""
    rules = rules or LoadRules.default()
    if kind is not None:
        kind = {"events": SEGMENT}.get(kind.strip().lower(), kind.strip().lower())
        if kind not in KINDS:
            raise BadInputError(
                Problem(f"unknown kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
            )
    problems: list[Problem] = []
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and _suffix(p) in _DATA_SUFFIXES
            )
            if not found:
                problems.append(Problem("no .csv or .jsonl files in this directory", str(path)))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem("no such file or directory", str(path)))
    sources: list[Source] = []
    seen: set[Path] = set()
    for path in files:
        if path.resolve() in seen:
            continue  # the same file named twice (or through its directory) loads once
        seen.add(path.resolve())
        file_kind = kind or kind_from_name(path)
        suffix = _suffix(path)
        if file_kind is None:
            problems.append(
                Problem(
                    "cannot tell from the file name what it holds",
                    str(path),
                    hint="name it accounts*, users*, memberships*, identities* (.csv or "
                    ".jsonl) or events*.jsonl for Segment calls, or pass --kind",
                )
            )
        elif suffix not in _DATA_SUFFIXES:
            problems.append(
                Problem(
                    f"unsupported file type {suffix or '(none)'!r}",
                    str(path),
                    hint="syncer loads .csv files and JSON Lines files (.jsonl, .ndjson)",
                )
            )
        elif file_kind == SEGMENT and suffix in CSV_SUFFIXES:
            problems.append(
                Problem(
                    "Segment calls are read from JSON Lines, not CSV",
                    str(path),
                    hint="one identify or group call per line in a .jsonl file",
                )
            )
        else:
            sources.append(Source(path, file_kind, suffix in CSV_SUFFIXES, rules))
    if problems:
        raise BadInputError(problems, summary="nothing was loaded")
    return sorted(sources, key=lambda s: KINDS.index(s.kind))


_DATA_SUFFIXES = CSV_SUFFIXES | JSONL_SUFFIXES


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def load_paths(
    engine: Engine,
    paths: Sequence[Path],
    *,
    kind: str | None = None,
    skip_bad: bool = False,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rules: LoadRules | None = None,
) -> LoadReport:
    """Load CSV / JSON Lines files (directories stand for their data files) into the store.

    Raises :class:`BadInputError` listing every problem (file, line, field, key, hint) and
    writes nothing, unless ``skip_bad``: then good rows load and bad ones are in
    :attr:`LoadReport.skipped`. A file that cannot be read at all (not UTF-8, missing columns)
    stops the load either way. Rows are checked against ``rules`` (the configured ladder and
    roll-ups; default: :meth:`LoadRules.default`).
    """
    sources = expand_sources(paths, kind, rules)
    check = _Check(sources)
    with engine.connect() as conn:
        check.read_all(progress)
        check.check_references(conn)
    if check.fatal:
        raise BadInputError(check.fatal + check.sorted_problems(), summary="nothing was loaded")
    problems = check.sorted_problems()
    if problems and not skip_bad:
        files = len({p.file for p in problems})
        raise BadInputError(
            problems,
            summary=f"nothing was loaded: {len(problems)} bad row"
            f"{'s' if len(problems) > 1 else ''} in {files} file{'s' if files > 1 else ''} "
            "(fix them, or load the good rows with --skip-bad)",
        )
    report = LoadReport([check.reports[s] for s in sources], skipped=problems)
    for src in sources:
        check.reports[src].skipped = len(check.bad_lines[src])
    written = 0
    with engine.begin() as conn:
        stamp = PreStamp(conn)
        for table in TABLE_KINDS:
            counts = report.tables.setdefault(table, {"inserted": 0, "updated": 0, "unchanged": 0})
            for src in sources:
                if table not in src.tables:
                    continue
                writer = BatchWriter(
                    conn, SPECS[table], check.reports[src], counts, batch_size, stamp=stamp
                )
                for row in src.rows():
                    if row.ignored or row.line in check.bad_lines[src]:
                        continue
                    if row.problems:
                        raise BadInputError(
                            row.problems, summary=f"{src.label} changed while it was loading"
                        )
                    for patch in row.patches:
                        if patch.table == table:
                            written += writer.add(patch)
                            if progress is not None and written % batch_size == 0:
                                progress("writing", written, check.to_write)
                writer.flush()
        stamp.finish()
        if progress is not None:
            progress("writing", check.to_write, check.to_write)
    return report


class _Check:
    """The validation pass: problems, bad lines, and the keys this load defines and needs."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self.reports = {s: FileReport(s.label, s.kind) for s in sources}
        self.bad_lines: dict[Source, set[int]] = {s: set() for s in sources}
        self.problems: dict[Source, list[Problem]] = {s: [] for s in sources}
        self.fatal: list[Problem] = []
        self.defined: dict[str, set[str]] = {"accounts": set(), "users": set()}
        self.referenced: dict[str, set[str]] = {"accounts": set(), "users": set()}
        self.rejected: dict[str, dict[str, str]] = {"accounts": {}, "users": {}}
        self.to_write = 0

    def reject(self, src: Source, line: int, problems: Iterable[Problem]) -> None:
        self.bad_lines[src].add(line)
        self.problems[src].extend(problems)

    def sorted_problems(self) -> list[Problem]:
        return [
            p for src in self.sources for p in sorted(self.problems[src], key=lambda p: p.line or 0)
        ]

    def read_all(self, progress: Progress | None) -> None:
        total = sum(s.path.stat().st_size for s in self.sources)
        done = 0
        for src in self.sources:
            report = self.reports[src]
            try:
                self._read(src, report, progress, done, total)
            except SourceError as exc:
                self.fatal.append(exc.problem)
            done += src.path.stat().st_size
            if progress is not None:
                progress("reading", done, total)

    def _read(
        self, src: Source, report: FileReport, progress: Progress | None, done: int, total: int
    ) -> None:
        first_line: dict[tuple[str, ...], int] | None = None if src.kind == SEGMENT else {}
        for row in src.rows():
            report.rows += 1
            if progress is not None and report.rows % 5000 == 0:
                progress("reading", done + src.bytes_read, total)
            if row.ignored:
                report.ignored += 1
                continue
            if row.problems:
                self.reject(src, row.line, row.problems)
                if row.key is not None and src.kind in self.rejected:
                    self.rejected[src.kind].setdefault(row.key[0], f"{src.label}:{row.line}")
                continue
            if first_line is not None:
                key = row.patches[0].key
                earlier = first_line.setdefault(key, row.line)
                if earlier != row.line:
                    self.reject(src, row.line, [_duplicate(src, SPECS[src.kind], row, earlier)])
                    continue
            self._note(row)

    def _note(self, row: ParsedRow) -> None:
        for patch in row.patches:
            self.to_write += 1
            if patch.table in self.defined:
                self.defined[patch.table].add(patch.key[0])
            elif patch.table == "memberships":
                self.referenced["users"].add(patch.key[0])
                self.referenced["accounts"].add(patch.key[1])
            elif patch.table == "identities":
                self.referenced[_entity_table(patch.key[0])].add(patch.key[1])

    def check_references(self, conn: Connection) -> None:
        """Reject memberships and identities whose user or account exists nowhere."""
        missing: dict[str, set[str]] = {}
        for table, keys in self.referenced.items():
            unknown = keys - self.defined[table]
            if unknown:
                column = SPECS[table].table.c[SPECS[table].key[0]]
                unknown -= stored_keys(conn, column, unknown)
            missing[table] = unknown
        if not any(missing.values()):
            return
        # Rare: read the referring files once more to say which lines refer to what.
        for src in self.sources:
            if src.kind not in ("memberships", "identities"):
                continue
            try:
                rows = list(_good_rows(src, self.bad_lines[src]))
            except SourceError:
                continue  # already reported
            for row in rows:
                problems = _unknown_refs(src, row, missing, self.rejected)
                if problems:
                    self.reject(src, row.line, problems)
                    self.to_write -= 1


def _good_rows(src: Source, bad_lines: set[int]) -> Iterable[ParsedRow]:
    return (r for r in src.rows() if r.patches and r.line not in bad_lines)


def _entity_table(entity: str) -> str:
    return "accounts" if entity == "account" else "users"


def _duplicate(src: Source, spec: TableSpec, row: ParsedRow, earlier: int) -> Problem:
    key = "/".join(row.patches[0].key)
    return Problem(
        f"duplicate key {key!r}: also on line {earlier} (lines {earlier} and {row.line})",
        src.label,
        row.line,
        ",".join(spec.key),
        key,
        hint=f"each {spec.name} key may appear once per file; merge or remove one of the rows",
    )


def _unknown_refs(
    src: Source,
    row: ParsedRow,
    missing: dict[str, set[str]],
    rejected: dict[str, dict[str, str]],
) -> list[Problem]:
    key = row.patches[0].key
    if src.kind == "memberships":
        refs = [("users", "user_id", key[0]), ("accounts", "account_id", key[1])]
    else:
        refs = [(_entity_table(key[0]), "entity_id", key[1])]
    problems = []
    for table, column, ref in refs:
        if ref not in missing[table]:
            continue
        where = rejected[table].get(ref)
        hint = (
            f"its own row ({where}) was rejected; fix that row"
            if where
            else f"load the {table[:-1]} in the same `syncer load` call or before, or fix the id"
        )
        problems.append(
            Problem(
                f"unknown {table[:-1]} {ref!r}: not in the store and not in this load",
                src.label,
                row.line,
                column,
                "/".join(key),
                hint,
            )
        )
    return problems
