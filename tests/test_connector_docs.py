"""docs/connectors.md's conformance example runs: its emulator, the walk-through's Acme connector
and the one-line test class are written to a directory and pytest runs them as an author would
(the kit arrives through syncer's ``pytest11`` entry point, nothing else configured)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "connectors.md"

# What the walk-through's block leaves out ("imports aside").
CONNECTOR_IMPORTS = """\
import json
from collections.abc import Callable, Sequence
from typing import ClassVar

import urllib3
from pydantic import SecretStr

from syncer.connectors.base import (
    Capabilities, ConnectorConfig, ObjectSpec, RateLimit, WriteRecord, WriteResult,
)
from syncer.connectors.http import HttpAnswer, HttpConfig, HttpConnector
from syncer.errors import BatchRejected
from syncer.fields import FieldSpec, FieldType

"""


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def block(blocks: list[str], first_line: str) -> str:
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, f"docs/connectors.md: one python block starting {first_line!r}"
    return found[0]


def test_the_documented_conformance_example_passes(tmp_path: Path) -> None:
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    files = {
        "acme_emulator.py": block(blocks, "# acme_emulator.py"),
        "test_acme_conformance.py": block(blocks, "# test_acme_conformance.py"),
        "syncer_acme.py": CONNECTOR_IMPORTS + block(blocks, "class AcmeConfig(HttpConfig)"),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "-rs"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert re.search(r"\b13 passed, 4 skipped\b", summary), done.stdout + done.stderr
    assert "failed" not in summary
    assert done.returncode == 0


def test_the_plugin_stays_out_of_the_way_until_asked(tmp_path: Path) -> None:
    """Installed, the plugin loads in every run: a module importing the kit without subclassing
    it collects nothing of it; a subclass without ``syncer_connector`` says what to write."""
    (tmp_path / "test_plain.py").write_text(
        "from syncer.testing.conformance import ConnectorConformance\n\n\n"
        "def test_plain():\n    assert ConnectorConformance\n",
        encoding="utf-8",
    )
    (tmp_path / "test_forgot.py").write_text(
        "from syncer.testing.conformance import ConnectorConformance\n\n\n"
        "class TestForgot(ConnectorConformance):\n    pass\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert re.search(r"\b1 passed, 17 errors\b", summary), done.stdout + done.stderr
    assert "override the `syncer_connector` fixture" in done.stdout
