"""A long-running process's heap: what starting made is frozen out of the cyclic
collector's sight, and the young generation is collected every YOUNG_GC_THRESHOLD
allocations (jobtask.collector.freeze_startup_heap, run by `jobtask up`, `jobtask serve`
and bench.server once they serve, and by `jobtask worker` and bench.noop_worker once
started)."""

from __future__ import annotations

import json
import subprocess
import sys

from jobtask.collector import YOUNG_GC_THRESHOLD

_PROBE = """
import gc, json
from jobtask.collector import freeze_startup_heap
before = gc.get_threshold()
freeze_startup_heap()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_a_started_process_collects_its_young_generation_less_often() -> None:
    # A process of its own: freezing the test runner's heap would outlive the test.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(out.stdout)
    assert seen["frozen"] > 0
    assert seen["after"] == [YOUNG_GC_THRESHOLD, *seen["before"][1:]]
    assert seen["before"][0] < YOUNG_GC_THRESHOLD
