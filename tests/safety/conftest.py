"""Fixtures for the safety tests: the auth helpers' token minting and the gateway stack."""

from __future__ import annotations

from tests.auth.conftest import auth
from tests.clients.conftest import client, live, workers
from tests.gateway.conftest import stack

__all__ = ["auth", "client", "live", "stack", "workers"]
