"""Build hook: a pure-Python install by default; ``SYNCER_COMPILE=1`` compiles the plan's hot
modules with mypyc (docs/performance.md, "A compiled build").

    SYNCER_COMPILE=1 pip install --no-build-isolation '.[prefect,test]' -c constraints.txt

The compiled modules are the same source, so they pass the same tests (``.ci/compiled`` runs
the policy, mapping, token and plan tests against them). ``--no-build-isolation`` lets the
build use the mypy already installed (the ``[test]`` extra); everything else stays in
pyproject.toml.
"""

import os

from setuptools import setup

#: Per record of every plan: read, resolve, evaluate the mapping, format, hash, diff.
HOT_MODULES = [
    "syncer/store/readers.py",
    "syncer/policies/scale.py",
    "syncer/policies/highwater.py",
    "syncer/policies/stage.py",
    "syncer/policies/primary.py",
    "syncer/policies/resolve.py",
    "syncer/mapping/context.py",
    "syncer/mapping/filters.py",
    "syncer/mapping/compile.py",
    "syncer/mapping/objects.py",
    "syncer/tokens.py",
    "syncer/fields.py",
    "syncer/state/hashing.py",
    "syncer/plan.py",
]


def _extensions() -> list:
    if os.environ.get("SYNCER_COMPILE", "") != "1":
        return []
    from mypyc.build import mypycify

    return mypycify(HOT_MODULES, opt_level="3")


setup(ext_modules=_extensions())
