"""syncer's Pipedrive destination, packaged on its own (entry point ``syncer.connectors``:
``pipedrive``)."""

from syncer_pipedrive.connector import PipedriveConfig, PipedriveConnector

__all__ = ["PipedriveConfig", "PipedriveConnector"]
