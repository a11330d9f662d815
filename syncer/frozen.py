"""Frozen records that are cheap to build: :func:`fast_init`, the model's constructor.

A plan builds a dozen frozen records per user (:mod:`syncer.model`), so how a frozen dataclass
sets its fields is a measurable share of every plan. This module imports nothing from syncer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["builder", "fast_init"]

_T = TypeVar("_T")


class _Factory:
    """The default of a ``default_factory`` field in a :func:`fast_init` signature."""

    def __repr__(self) -> str:
        return "<factory>"  # what dataclasses shows in the same place


_NO_VALUE = _Factory()

# ``obj.__class__ = cls`` as a call that does not go through a frozen class's ``__setattr__``.
_set_class = object.__dict__["__class__"].__set__


def _twin(cls: type) -> type:
    """An unfrozen class with ``cls``'s slots (so ``__class__`` may move between the two)."""
    slots = cls.__dict__["__slots__"]
    twin = type(cls.__name__, (), {"__slots__": slots, "__module__": cls.__module__})
    twin.__qualname__ = f"{cls.__qualname__}.<being built>"
    _set_class(object.__new__(twin), cls)  # raises now, not at the first record, if incompatible
    return twin


def fast_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass a faster ``__init__``: same signature, same instance.

    A frozen dataclass's ``__init__`` sets every field through ``object.__setattr__`` (0.67 µs
    for six fields on CPython 3.11); calling each slot's descriptor directly costs 0.43 µs, as
    each call still builds an argument tuple. Faster still, and what this does: the new instance
    briefly takes the class of an unfrozen *twin* with the same slots, so every field is one
    plain slot store, then takes its own class back (``__class__`` assignment checks that the
    layouts match): 0.28 µs for six fields, 0.38 µs for nine (0.58 µs through the descriptors),
    for a dozen records per user of a plan. The instance is the class's own, frozen, from the
    moment ``__init__`` returns; a subclass's instance (whose layout may differ) takes the
    descriptor path.

    Why generated source (``exec``), as ``dataclasses`` itself builds every ``__init__``: an
    ``__init__`` with the class's own signature is either written out or generated. Measured on
    a nine-field record (CPython 3.11): the dataclass's own 0.91 µs, the descriptor calls 0.52
    µs, a closure looping over the setters with ``*args`` 1.10 µs (slower than no change at
    all), the same body written by hand 0.50 µs — twelve hand-written copies of what this writes
    once. A non-frozen dataclass costs 0.22 µs, at the price of records that can be assigned to.
    """
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"fast_init needs a slotted dataclass, not {cls.__qualname__}")
    params = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(not f.init or f.kw_only for f in params):
        raise TypeError(f"fast_init cannot keep {cls.__qualname__}'s __init__ semantics")
    if cls.__bases__ != (object,):
        raise TypeError(f"fast_init needs a record with no base class, not {cls.__qualname__}")
    env: dict[str, Any] = {"_NO_VALUE": _NO_VALUE, "_cls": cls, "_set_class": _set_class}
    args, defaults, stores, sets = [], [], [], []
    for f in params:
        env[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is not dataclasses.MISSING:
            env[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_factory_{f.name}"] = f.default_factory
            args.append(f"{f.name}=_NO_VALUE")
            defaults.append(f"  if {f.name} is _NO_VALUE: {f.name} = _factory_{f.name}()")
        else:
            args.append(f.name)
        stores.append(f"    self.{f.name} = {f.name}")
        sets.append(f"    _set_{f.name}(self, {f.name})")
    twin = env["_twin"] = _twin(cls)
    # A factory taking the environment as parameters makes each a closure cell (fast to load).
    body = [
        *defaults,
        "  if type(self) is _cls:",
        "    _set_class(self, _twin)",
        *stores,
        "    self.__class__ = _cls",
        "  else:",
        *sets,
    ]
    # The twin's own __init__ (what builder() calls): the stores, then the class's own class.
    build = [*defaults, *(line[2:] for line in stores), "  self.__class__ = _cls"]
    signature = f"(self, {', '.join(args)}):\n"
    source = (
        f"def _make({', '.join(env)}):\n"
        f"  def __init__{signature}"
        + "\n".join("  " + line for line in body)
        + f"\n  def _build{signature}"
        + "\n".join("  " + line for line in build)
        + "\n  return __init__, _build\n"
    )
    namespace: dict[str, Callable[..., Any]] = {}
    exec(source, {}, namespace)
    init, build = namespace["_make"](**env)
    twin.__init__ = build  # type: ignore[misc]  # the twin is ours: no subclass to mind
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    _BUILDERS[cls] = twin
    return cls


_BUILDERS: dict[type, type] = {}


def builder(cls: type[_T]) -> type[_T]:
    """What builds a :func:`fast_init` record in a hot loop: called like ``cls``, it returns a
    ``cls`` instance equal in every way to ``cls(...)``'s, 0.06 µs sooner (no subclass check,
    no first class switch: it starts as the twin). Only for ``cls`` itself, never a subclass."""
    return _BUILDERS[cls]  # its instances end up of class cls
