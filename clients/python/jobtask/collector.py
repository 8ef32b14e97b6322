"""The cyclic garbage collector's settings for a long-running jobtask process once it has
started (the worker agent's: `jobtask worker`, and bench.noop_worker, which stands in for
it). The server's processes do the same (jobtask.server.app.freeze_startup_heap).

A worker on the store-less session (bench.bare, 30,000 no-op function tasks, 50 a message)
spent 3.9-4.4 us a task in the collector at Python's defaults: every message's 50 runs
(their leases, outboxes, contexts, coroutines and asyncio tasks: about a thousand container
objects) set off a young collection that scanned them and promoted those in flight, and
the promoted runs set off five full collections, each scanning all that start-up made
(modules, protobuf descriptors, classes). No cycle is made per task (467 objects were
collected in the whole run); with these settings the same run made no collection at all.
"""

from __future__ import annotations

import gc

# Container objects allocated (net) before a young-generation collection; Python's
# default is 700, fewer than a message's runs make.
YOUNG_GC_THRESHOLD = 10_000


def freeze_startup_heap() -> None:
    """What starting made is moved out of the collector's sight (gc.freeze), so that a
    full collection scans what running made, not all of that again; and the young
    generation is collected every YOUNG_GC_THRESHOLD allocations, not 700. Process-wide:
    for a program's main, once it has started, not for a library."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)
