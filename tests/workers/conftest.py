"""The client tests' fixtures (a live cluster with short leases, real worker processes)."""

from tests.clients.conftest import client, live, workers

__all__ = ["client", "live", "workers"]
