"""A cluster whose only quick wake-ups are the change signal's, so that a test can show a
stream or a claim was woken by a change rather than found it on a periodic check, by order
alone (no timing): its safety wait and lease are far beyond any deadline in tests.polling."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import Cluster, running_cluster
from tests.polling import DEADLINE

# Beyond DEADLINE: anything that arrives within a deadline was signalled.
FAR = 4 * DEADLINE


@pytest.fixture
async def signalled(database_url: str) -> AsyncIterator[Cluster]:
    async with running_cluster(database_url, lease_ttl=3 * FAR, safety_wait=FAR) as c:
        yield c
