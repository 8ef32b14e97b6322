"""A serving process's heap: what starting made is frozen out of the cyclic collector's
sight, and the young generation is collected every YOUNG_GC_THRESHOLD allocations
(jobtask.server.app.freeze_startup_heap, run by `jobtask up`, `jobtask serve` and
bench.server once they serve; jobtask.collector.freeze_startup_heap, the same for a worker
process: `jobtask worker` and bench.noop_worker once started)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from jobtask.collector import YOUNG_GC_THRESHOLD as WORKER_THRESHOLD
from jobtask.server.app import YOUNG_GC_THRESHOLD

_PROBE = """
import gc, json
from {module} import freeze_startup_heap
before = gc.get_threshold()
freeze_startup_heap()
after, frozen = gc.get_threshold(), gc.get_freeze_count()
print(json.dumps({{"before": before, "after": after, "frozen": frozen}}))
"""


@pytest.mark.parametrize(
    ("module", "threshold"),
    [("jobtask.server.app", YOUNG_GC_THRESHOLD), ("jobtask.collector", WORKER_THRESHOLD)],
)
def test_a_serving_process_collects_its_young_generation_less_often(
    module: str, threshold: int
) -> None:
    # A process of its own: freezing the test runner's heap would outlive the test.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen = json.loads(out.stdout)
    assert seen["frozen"] > 0
    assert seen["after"] == [threshold, *seen["before"][1:]]
    assert seen["before"][0] < threshold
