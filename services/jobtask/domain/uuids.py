"""Arvados-style UUIDs: `<cluster id>-<type infix>-<15 base-36 characters>`."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time

from jobtask.domain.errors import InvalidArgument

JOB_INFIX = "8i9sb"
TASK_INFIX = "ot0gb"
USER_INFIX = "tpzed"
TOKEN_INFIX = "gj3su"

KINDS = {
    JOB_INFIX: "arvados#job",
    TASK_INFIX: "arvados#jobTask",
    USER_INFIX: "arvados#user",
    TOKEN_INFIX: "arvados#apiClientAuthorization",
}
INFIX_OF_KIND = {kind: infix for infix, kind in KINDS.items()}

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
UUID_RE = re.compile(r"^[0-9a-z]{5}-[0-9a-z]{5}-[0-9a-z]{15}$")
CLUSTER_RE = re.compile(r"^[0-9a-z]{5}$")


def check_cluster_id(cluster_id: str) -> str:
    if not CLUSTER_RE.match(cluster_id):
        raise ValueError(
            f"cluster id {cluster_id!r} must be exactly 5 lowercase ASCII letters or digits"
        )
    return cluster_id


_TAIL_SPACE = 36**15


# Every two-digit base-36 string, by value: base36 takes two digits a step.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def base36(n: int, width: int = 1) -> str:
    """A non-negative number in base 36 (digits, then lowercase letters), zero-padded to
    `width` characters."""
    pairs: list[str] = []
    while n >= 1296:
        n, r = divmod(n, 1296)
        pairs.append(_PAIRS[r])
    pairs.append(_PAIRS[n] if n >= 36 else _ALPHABET[n])
    return "".join(reversed(pairs)).rjust(width, "0")


def new_uuid(cluster_id: str, infix: str) -> str:
    # One draw for the 15 characters (uniform over all tails), not one per character: a
    # submission of a thousand jobs or tasks made 15,000 draws from the system's source.
    return f"{cluster_id}-{infix}-{base36(secrets.randbelow(_TAIL_SPACE), 15)}"


# Ordered uuids (ordered_uuid): 7 characters of the time made, in tenths of a second since
# 2020-01-01 UTC (36**7 tenths: until the 2260s), then 8 of a counter that starts at random
# in each process.
_EPOCH = 1_577_836_800
_TIME_WIDTH, _COUNT_WIDTH = 7, 8
_COUNT_SPACE = 36**_COUNT_WIDTH
_counter = itertools.count(secrets.randbelow(_COUNT_SPACE))
# The last tenth of a second ordered_uuid saw, and its text.
_last_tenth: tuple[int, str] = (-1, "")


def _restart_counter() -> None:
    global _counter
    _counter = itertools.count(secrets.randbelow(_COUNT_SPACE))


# A forked child must not repeat its parent's uuids.
os.register_at_fork(after_in_child=_restart_counter)


def ordered_uuid(cluster_id: str, infix: str) -> str:
    """A uuid of the same form whose 15 characters begin with the time it was made: those
    made later sort after (to the tenth of a second; in one process, in the order made), so
    every index keyed by them -- a table's uuids, the change feed's job_uuid -- grows at
    its end like one keyed by id, where a random uuid's entry lands on a page of its own
    (on SQLite a 100-job commit wrote ~100 pages of the events' (job_uuid, seq) index, a
    third of what a one-task job writes; bench.capture.pages_written). Unique: a process
    counts, and another process's counter would have to reach the same value within the
    same tenth of a second. Uuids are names, not secrets (they appear in URLs and logs);
    tokens' secrets are drawn apart (jobtask.manager.tokens)."""
    global _last_tenth
    tenths = int((time.time() - _EPOCH) * 10)
    seen, head = _last_tenth
    if tenths != seen:  # a batch's uuids mostly share their tenth: its text made once
        head = base36(tenths, _TIME_WIDTH)
        _last_tenth = (tenths, head)
    # The count's eight characters (_COUNT_WIDTH) as four of base36's pairs.
    high, low = divmod(next(_counter) % _COUNT_SPACE, 1296**2)
    pairs = _PAIRS
    return (
        f"{cluster_id}-{infix}-{head}"
        f"{pairs[high // 1296]}{pairs[high % 1296]}{pairs[low // 1296]}{pairs[low % 1296]}"
    )


def system_user_uuid(cluster_id: str) -> str:
    return f"{cluster_id}-{USER_INFIX}-000000000000000"


def check_uuid(value: str, infix: str, field: str) -> str:
    """Validates that `value` is a UUID of the kind `infix`; names `field` if not."""
    if not value:
        raise InvalidArgument(field, "is required")
    if not UUID_RE.match(value):
        shown = repr(value) if len(value) <= 60 else repr(value[:40]) + f" ({len(value)} chars)"
        raise InvalidArgument(field, f"{shown} is not a valid uuid")
    if value[6:11] != infix:
        raise InvalidArgument(
            field,
            f"{value!r} is a uuid of kind {KINDS.get(value[6:11], 'unknown')}, not {KINDS[infix]}",
        )
    return value
