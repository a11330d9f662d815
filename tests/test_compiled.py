"""The opt-in compiled build (setup.py, ``SYNCER_COMPILE=1``) is what the tests ran against.

``.ci/compiled`` builds the hot modules with mypyc and runs the policy, mapping, token and plan
tests with ``SYNCER_EXPECT_COMPILED=1``: this test fails there if any of them is still the
Python source (a stale tree, a module left out of the build), and here (the default, pure
install) if a compiled module shadows a source file the tests mean to check.
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _hot_modules() -> list[str]:
    """The modules setup.py compiles, as dotted names (its ``HOT_MODULES`` literal)."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "HOT_MODULES" for t in targets):
                assert node.value is not None
                paths = ast.literal_eval(node.value)
                return [p.removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no HOT_MODULES list")


@pytest.mark.parametrize("name", _hot_modules())
def test_the_hot_modules_are_compiled_exactly_when_expected(name: str) -> None:
    module = importlib.import_module(name)
    compiled = Path(module.__file__ or "").suffix == ".so"
    expected = os.environ.get("SYNCER_EXPECT_COMPILED") == "1"
    assert compiled == expected, (
        f"{name} is {'compiled' if compiled else 'Python source'} ({module.__file__}); "
        + (
            "build it with `SYNCER_COMPILE=1 python setup.py build_ext --inplace`"
            if expected
            else "a compiled build shadows the source: delete the .so files (git clean -X)"
        )
    )
