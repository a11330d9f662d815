"""syncer's pytest plugin (entry point ``pytest11``): the conformance kit's one author fixture.

Installed with syncer, so it loads in every pytest run of the environment. It therefore does
nothing unless asked: it imports nothing of the engine, defines no autouse fixture and no
collection hook. Tests come only from a class that subclasses
:class:`syncer.testing.conformance.ConnectorConformance` (which the author imports, and whose
name, not starting with ``Test``, is never collected itself).

The fixture an author overrides (in a conftest, a test module or the class):

``syncer_connector``
    A :class:`syncer.testing.kit.ConnectorFactory` — or any callable returning a new connector —
    bound to the author's emulator or sandbox. This default fails the test, saying what to write.
"""

from __future__ import annotations

import pytest

__all__ = ["syncer_connector"]


@pytest.fixture
def syncer_connector(request: pytest.FixtureRequest) -> object:
    """Override: a factory of connectors bound to your emulator (see this module's docstring)."""
    pytest.fail(
        f"{request.node.nodeid}: override the `syncer_connector` fixture with a factory of "
        "connectors bound to your emulator, e.g.\n"
        "    @pytest.fixture\n"
        "    def syncer_connector(acme_emulator):\n"
        "        return ConnectorFactory(lambda: AcmeConnector(AcmeConfig(...)),\n"
        "                                faults=EmulatorFaults(acme_emulator))\n"
        "(ConnectorFactory and EmulatorFaults are in syncer.testing.kit; see docs/connectors.md)",
        pytrace=False,
    )
