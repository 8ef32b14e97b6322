"""Which metrics, and which label values, each kind of process exports: only what it can
count (a series that cannot move is a false zero on a dashboard)."""

from __future__ import annotations

import pytest

from tests.observability.conftest import Samples, observed, scrape
from tests.scale.conftest import Topology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for (sample, labels), _ in samples.items() if sample == name}


async def test_tasks_finished_is_labelled_by_the_statuses_an_attempt_ends_in(
    sqlite_topology: Topology,
) -> None:
    """Never `active` (nor `queued`, `canceled`): an ended attempt's task is not active."""
    _, url = await observed(sqlite_topology, "tasks", "tasks")
    samples = await scrape(url)
    assert label_values(samples, "jobtask_tasks_finished_total", "status") == {
        "completed",
        "soft-failed",
        "failed",
        "paused",
    }
