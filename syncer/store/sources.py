"""Input files: which kind each holds, and their rows as :class:`~syncer.store.values.Patch` es.

A file's kind comes from ``--kind`` or its name: ``accounts*``, ``users*``, ``memberships*``,
``identities*`` (``.csv``, ``.jsonl`` or ``.ndjson``) and ``events*`` / ``segment*`` (Segment
``identify`` and ``group`` calls, JSON Lines only). A directory stands for the data files
directly in it.

CSV files have a header row naming the columns. Columns that are not the table's become
``attributes`` entries (accounts and users; other tables have no attributes, so an unknown
column is an error); a column named ``attributes`` may hold a JSON object. JSON Lines files hold
one object per line with the same names, an optional ``attributes`` object, and unknown keys as
attributes.

Problems come in two sizes: a bad row (:attr:`ParsedRow.problems`, skippable with
``--skip-bad``) and a bad file (:class:`SourceError`: not UTF-8, no header, missing or unknown
columns, malformed CSV quoting), which stops the load whatever the flags.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncer.errors import Problem
from syncer.store.encoding import UTF8_HINT, NotUtf8, csv_field, json_field
from syncer.store.rules import LoadRules
from syncer.store.segment import parse_event
from syncer.store.values import (
    SPECS,
    BadValue,
    ParsedRow,
    Patch,
    TableSpec,
    cell_attribute,
    column_value,
    json_attribute,
)

TABLE_KINDS: tuple[str, ...] = ("accounts", "users", "memberships", "identities")
SEGMENT = "segment"
KINDS: tuple[str, ...] = (*TABLE_KINDS, SEGMENT)
_NAME_PREFIXES: tuple[tuple[str, str], ...] = (
    *((k, k) for k in TABLE_KINDS),
    ("events", SEGMENT),
    ("segment", SEGMENT),
)
CSV_SUFFIXES = frozenset({".csv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})


class SourceError(Exception):
    """The file as a whole cannot be read; nothing in it is loaded."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def kind_from_name(path: Path) -> str | None:
    """The kind a file's name announces, or ``None``."""
    name = path.name.lower()
    for prefix, kind in _NAME_PREFIXES:
        if name.startswith(prefix):
            return kind
    return None


@dataclass(eq=False, slots=True)
class Source:
    """One input file, its kind and format; ``bytes_read`` follows the current read."""

    path: Path
    kind: str
    is_csv: bool
    rules: LoadRules = field(default_factory=LoadRules)
    bytes_read: int = field(default=0, init=False)

    @property
    def label(self) -> str:
        return str(self.path)

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables this file writes, in load order."""
        return TABLE_KINDS[:3] if self.kind == SEGMENT else (self.kind,)

    def rows(self) -> Iterator[ParsedRow]:
        """Every non-blank data row, in file order, checked against :attr:`rules`;
        :class:`SourceError` for a bad file."""
        for row in self._parsed():
            problems = self.rules.check(row, self.label) if row.patches else None
            yield ParsedRow(row.line, problems=problems, key=row.key) if problems else row

    def _parsed(self) -> Iterator[ParsedRow]:
        if self.kind == SEGMENT:
            for line, obj, problem in self._json_objects():
                if obj is None:
                    yield ParsedRow(line, problems=[problem] if problem else [])
                else:
                    yield parse_event(obj, self.label, line)
        elif self.is_csv:
            yield from self._csv_rows(SPECS[self.kind])
        else:
            spec = SPECS[self.kind]
            for line, obj, problem in self._json_objects():
                if obj is None:
                    yield ParsedRow(line, problems=[problem] if problem else [])
                else:
                    yield _table_row(spec, self.label, line, obj.items(), from_csv=False)

    def _lines(self) -> Iterator[str]:
        """The file's lines decoded strictly as UTF-8 (a leading BOM dropped).

        Raises :class:`NotUtf8`; the readers turn it into a :class:`SourceError` that also
        names the column (or JSON key) holding the bad byte when they can tell.
        """
        offset = 0
        with self.path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise NotUtf8(number, offset + exc.start, raw, raw[exc.start]) from None
                if number == 1 and text.startswith("\ufeff"):
                    text = text[1:]
                offset += len(raw)
                self.bytes_read = offset
                yield text

    def _not_utf8(self, bad: NotUtf8, field: str | None) -> SourceError:
        return SourceError(
            Problem(
                f"not valid UTF-8: byte 0x{bad.byte:02x} at byte offset {bad.offset}; "
                "nothing in this file was loaded",
                file=self.label,
                line=bad.line,
                field=field,
                hint=UTF8_HINT,
            )
        )

    def _json_objects(self) -> Iterator[tuple[int, dict[str, Any] | None, Problem | None]]:
        """(line, object, None) or (line, None, problem) for every non-blank line."""
        try:
            yield from self._json_lines()
        except NotUtf8 as bad:
            raise self._not_utf8(bad, json_field(bad.raw)) from None

    def _json_lines(self) -> Iterator[tuple[int, dict[str, Any] | None, Problem | None]]:
        for number, text in enumerate(self._lines(), 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text, parse_constant=_reject_constant)
            except (json.JSONDecodeError, BadValue) as exc:
                yield (
                    number,
                    None,
                    Problem(
                        f"malformed JSON: {exc}",
                        file=self.label,
                        line=number,
                        hint="each line must be one complete JSON object",
                    ),
                )
                continue
            if not isinstance(obj, dict):
                yield (
                    number,
                    None,
                    Problem(
                        f"expected a JSON object, got {type(obj).__name__}",
                        file=self.label,
                        line=number,
                        hint='each line must be one JSON object such as {"user_id": "u1"}',
                    ),
                )
                continue
            yield number, obj, None

    def _csv_rows(self, spec: TableSpec) -> Iterator[ParsedRow]:
        header: list[str] = []
        try:
            yield from self._csv_records(spec, header)
        except NotUtf8 as bad:
            raise self._not_utf8(bad, csv_field(header, bad.raw)) from None

    def _csv_records(self, spec: TableSpec, header: list[str]) -> Iterator[ParsedRow]:
        """The data rows; fills ``header`` (the caller's list) once the header row is read."""
        reader = csv.reader(self._lines(), strict=True)
        try:
            header.extend(name.strip() for name in next(reader))
        except StopIteration:
            raise SourceError(
                Problem(
                    "the file is empty; a CSV file needs a header row naming its columns",
                    file=self.label,
                    hint=f"e.g. {','.join(spec.required)}",
                )
            ) from None
        except csv.Error as exc:
            raise self._csv_error(exc, reader.line_num) from None
        self._check_header(spec, header)
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise self._csv_error(exc, start) from None
            line, start = start, reader.line_num + 1
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line
            if len(cells) != len(header):
                yield ParsedRow(
                    line,
                    problems=[
                        Problem(
                            f"the row has {len(cells)} cells but the header names "
                            f"{len(header)} columns",
                            file=self.label,
                            line=line,
                            hint="quote cells that contain commas, and give every row "
                            "one cell per column",
                        )
                    ],
                )
                continue
            yield _table_row(spec, self.label, line, zip(header, cells, strict=True), from_csv=True)

    def _csv_error(self, exc: csv.Error, line: int) -> SourceError:
        return SourceError(
            Problem(
                f"malformed CSV: {exc}; nothing in this file was loaded",
                file=self.label,
                line=line,
                hint="check the quoting on that line (a quote inside a cell is written twice)",
            )
        )

    def _check_header(self, spec: TableSpec, header: list[str]) -> None:
        problems: list[str] = []
        if "" in header:
            problems.append(f"column {header.index('') + 1} has no name")
        dupes = sorted({h for h in header if h and header.count(h) > 1})
        if dupes:
            problems.append(f"columns named twice: {', '.join(dupes)}")
        missing = [c for c in spec.required if c not in header]
        if missing:
            problems.append(
                f"missing required column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
            )
        if not spec.has_attributes:
            unknown = [h for h in header if h and h not in spec.all_columns]
            if unknown:
                problems.append(
                    f"unknown column{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)} "
                    f"({spec.name} have no attributes; known columns: "
                    f"{', '.join(spec.all_columns)})"
                )
        if problems:
            raise SourceError(
                Problem(
                    "; ".join(problems) + f"; the header is: {','.join(header)}",
                    file=self.label,
                    line=1,
                    field=",".join(missing) or None,
                    hint=f"the first row must name the {spec.name} columns, at least "
                    f"{', '.join(spec.required)}",
                )
            )


def _reject_constant(name: str) -> Any:
    raise BadValue(f"{name} is not valid JSON")


def _table_row(
    spec: TableSpec,
    file: str,
    line: int,
    items: Iterable[tuple[str, Any]],
    *,
    from_csv: bool,
) -> ParsedRow:
    """One CSV record or JSON object of a table kind, as a patch or problems."""
    values: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    problems: list[Problem] = []

    def bad(name: str, message: str, hint: str | None = None) -> None:
        problems.append(Problem(message, file=file, line=line, field=name, hint=hint))

    for name, raw in items:
        if name in spec.all_columns and name != "attributes":
            try:
                values[name] = column_value(spec, name, raw)
            except BadValue as exc:
                bad(name, str(exc), exc.hint)
        elif name == "attributes" and spec.has_attributes:
            _attributes_object(raw, from_csv, attributes, bad)
        elif spec.has_attributes:
            try:
                attributes[name] = cell_attribute(raw) if from_csv else json_attribute(raw)
            except BadValue as exc:
                bad(name, str(exc), exc.hint)
        else:
            bad(
                name,
                f"unknown field; {spec.name} have no attributes",
                hint=f"known fields: {', '.join(spec.all_columns)}",
            )
    reported = {p.field for p in problems}
    for name in spec.required:
        if name in reported:
            continue
        if name not in values:
            bad(name, f"missing; every {spec.name} row needs {', '.join(spec.required)}")
        elif values[name] is None:
            bad(name, f"empty {'key' if name in spec.key else 'value'}; every row needs one")
    key = [values[n] for n in spec.key if isinstance(values.get(n), str)]
    row_key = tuple(key) if len(key) == len(spec.key) else None
    if problems:
        key_label = "/".join(row_key) if row_key else None
        for i, p in enumerate(problems):
            problems[i] = Problem(p.message, p.file, p.line, p.field, key_label, p.hint)
        return ParsedRow(line, problems=problems, key=row_key)
    assert row_key is not None  # every key column is required and was checked above
    for name in spec.key:
        values.pop(name)
    return ParsedRow(line, patches=[Patch(spec.name, row_key, values, attributes)], key=row_key)


def _attributes_object(raw: Any, from_csv: bool, into: dict[str, Any], bad: Any) -> None:
    """Merge an ``attributes`` value (a JSON object, or CSV text holding one) into ``into``."""
    value = raw
    if from_csv:
        if not raw.strip():
            return
        try:
            value = json.loads(raw, parse_constant=_reject_constant)
        except (json.JSONDecodeError, BadValue) as exc:
            bad("attributes", f"not a JSON object: {exc}", 'e.g. {"plan": "pro"}')
            return
    if value is None:
        return
    if not isinstance(value, dict):
        bad("attributes", f"expected a JSON object, got {type(value).__name__}")
        return
    try:
        into.update({str(k): json_attribute(v) for k, v in value.items()})
    except BadValue as exc:
        bad("attributes", str(exc), exc.hint)
