"""The Azurite launcher (``tools.azurite``): start on a free port, serve tables, stop.

Needs ``npm ci`` (Azurite from ``node_modules``).
"""

from __future__ import annotations

import socket

import pytest
from azure.data.tables import TableServiceClient

from tools.azurite import Azurite

pytestmark = pytest.mark.integration


def _port_is_closed(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_azurite_starts_serves_tables_and_stops() -> None:
    """The launcher's connection string reaches a working Table service; stopping frees the port."""
    az = Azurite()
    with az:
        assert az.table_endpoint == f"http://127.0.0.1:{az.port}/devstoreaccount1"
        with TableServiceClient.from_connection_string(az.connection_string) as service:
            table = service.create_table("probe")
            table.create_entity({"PartitionKey": "p", "RowKey": "r", "n": 7})
            assert table.get_entity("p", "r")["n"] == 7
    assert _port_is_closed("127.0.0.1", az.port)
    with pytest.raises(RuntimeError, match="not running"):
        _ = az.connection_string
