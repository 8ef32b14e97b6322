"""The cyclic garbage collector's settings for a long-running jobtask process once it has
started: the servers (`jobtask up`, `jobtask serve`, bench.server once they serve) and the
worker agent (`jobtask worker`, and bench.noop_worker, which stands in for it).

Server: a fan-out's server paused 52 ms for each full collection, every call in flight
with it, scanning all that starting made (modules, protobuf descriptors, compiled
statements, the pool); a group of 100 one-task jobs (rows, payloads, messages) lives for a
few thousand allocations, so at Python's default of 700 most of it was scanned and
promoted, and the older generations collected the more often (one-task jobs on SQLite,
4,000 jobs: the collector's time halved with these settings, 0.18 s to 0.09 s, about 22 us
a job).

Worker: on the store-less session (bench.bare, 30,000 no-op function tasks, 50 a message)
it spent 3.9-4.4 us a task in the collector at the defaults: every message's 50 runs (their
leases, outboxes, contexts, coroutines and asyncio tasks: about a thousand container
objects) set off a young collection that scanned them and promoted those in flight, and the
promoted runs set off five full collections over the start-up heap. With these settings the
same run made no collection at all.

Neither makes cycles per job or task (467 objects were collected in the worker's whole run).
"""

from __future__ import annotations

import gc

# Container objects allocated (net) before a young-generation collection; Python's
# default is 700, fewer than one message's runs or one group's rows make.
YOUNG_GC_THRESHOLD = 10_000


def freeze_startup_heap() -> None:
    """What starting made is moved out of the collector's sight (gc.freeze), so that a
    full collection scans what running made, not all of that again; and the young
    generation is collected every YOUNG_GC_THRESHOLD allocations, not 700. Process-wide:
    for a program's main, once it has started (serves, or has its functions imported),
    not for a library."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)
