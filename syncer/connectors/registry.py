"""Connector discovery: the ``syncer.connectors`` entry point group.

Built-in connectors register exactly like plugins (see ``[project.entry-points]`` in
pyproject.toml), so there is one path for both. Each connector is validated when it is loaded,
with an error that names the plugin, its entry point and what is wrong — a broken plugin is
reported, it does not break the other connectors.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from syncer.connectors.base import Capabilities, Connector, ConnectorConfig, ObjectSpec
from syncer.errors import ConfigError

GROUP = "syncer.connectors"


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    name: str
    entry_point: str  # "module:Class"
    distribution: str | None
    cls: type[Connector] | None
    error: str | None = None


def validate_connector(cls: object, name: str, where: str) -> type[Connector]:
    """Check that ``cls`` honours the contract; raise ConfigError naming the plugin otherwise."""
    problems: list[str] = []
    if not (inspect.isclass(cls) and issubclass(cls, Connector)):
        raise ConfigError(
            f"connector plugin {name!r} ({where}) is not a subclass of "
            "syncer.connectors.base.Connector"
        )
    if getattr(cls, "name", None) != name:
        problems.append(
            f"its class attribute name is {getattr(cls, 'name', None)!r}, but it is registered "
            f"as {name!r}; make them equal"
        )
    config_model = getattr(cls, "config_model", None)
    if not (inspect.isclass(config_model) and issubclass(config_model, ConnectorConfig)):
        problems.append("config_model must be a subclass of ConnectorConfig")
    caps = getattr(cls, "capabilities", None)
    if not isinstance(caps, Capabilities):
        problems.append("capabilities must be a Capabilities instance")
    elif caps.max_batch < 1:
        problems.append(f"capabilities.max_batch must be >= 1, not {caps.max_batch}")
    objects = getattr(cls, "objects", None)
    if not objects or not all(isinstance(o, ObjectSpec) for o in objects.values()):
        problems.append("objects must map object names to ObjectSpec")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        problems.append(f"it does not implement {missing}")
    if problems:
        raise ConfigError(
            [f"connector plugin {name!r} ({where}): {p}" for p in problems],
            summary=f"connector plugin {name!r} is invalid",
        )
    return cls


def _load(ep: EntryPoint) -> ConnectorInfo:
    dist = ep.dist.name if ep.dist is not None else None
    try:
        cls = validate_connector(ep.load(), ep.name, ep.value)
    except ConfigError as exc:
        return ConnectorInfo(ep.name, ep.value, dist, None, str(exc))
    except Exception as exc:  # a plugin that fails to import must not hide the others
        return ConnectorInfo(ep.name, ep.value, dist, None, f"failed to import {ep.value}: {exc!r}")
    return ConnectorInfo(ep.name, ep.value, dist, cls)


def discover() -> list[ConnectorInfo]:
    """Every registered connector, loaded and validated, sorted by name."""
    return sorted((_load(ep) for ep in entry_points(group=GROUP)), key=lambda i: i.name)


def get_connector(name: str) -> type[Connector]:
    """The connector class registered as ``name``; ConfigError if absent or invalid."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        known = ", ".join(i.name for i in discover()) or "none"
        raise ConfigError(
            f"no connector named {name!r} is installed (installed: {known}); install its "
            f"package, which must register it under the entry point group {GROUP!r}"
        )
    info = _load(found[0])
    if info.cls is None:
        raise ConfigError(info.error or f"connector {name!r} failed to load")
    return info.cls
