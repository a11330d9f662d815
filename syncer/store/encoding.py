"""Where a byte that is not UTF-8 sits: the line, and the CSV column or JSON key holding it.

A file that is not UTF-8 is refused as a whole (loading only the rows that happen to decode
would be silently partial); these helpers make the message point at the cell to fix.
"""

from __future__ import annotations

import csv
import json
from typing import Any

UTF8_HINT = (
    "save the file as UTF-8 (in Excel: Save As > 'CSV UTF-8'; or `iconv -f latin1 -t utf-8`) "
    "and load it again"
)


class NotUtf8(Exception):
    """A line that is not UTF-8: where, and the raw bytes to find the column in."""

    def __init__(self, line: int, offset: int, raw: bytes, byte: int) -> None:
        super().__init__(f"line {line}: byte 0x{byte:02x} at offset {offset} is not UTF-8")
        self.line = line
        self.offset = offset
        self.raw = raw
        self.byte = byte


def _undecodable(text: str) -> bool:
    # surrogateescape turns each undecodable byte into one of U+DC80..U+DCFF.
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def csv_field(header: list[str], raw: bytes) -> str | None:
    """The header column whose cell holds the undecodable byte, when the line says so alone."""
    if not header:
        return None  # the bad byte is in the header itself
    try:
        cells = next(csv.reader([raw.decode("utf-8", "surrogateescape")], strict=True))
    except (csv.Error, StopIteration):
        return None
    if len(cells) != len(header):
        return None  # a continuation line of a quoted multi-line cell: cannot tell
    for name, cell in zip(header, cells, strict=True):
        if _undecodable(cell):
            return name
    return None


def json_field(raw: bytes) -> str | None:
    """The (dotted) key whose value holds the undecodable byte, if the line is valid JSON."""
    try:
        obj = json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError:
        return None
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                name = f"{path}.{key}" if path else str(key)
                if _undecodable(str(key)):
                    return name
                stack.append((name, item))
        elif isinstance(value, list):
            stack.extend((path, item) for item in reversed(value))
        elif isinstance(value, str) and _undecodable(value):
            return path or None
    return None
