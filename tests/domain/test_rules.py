"""The completion rule, temporary failure and the retry limit, and the ripple tables."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import random
import struct
from typing import Any

import pytest
from jobtask.domain.ripple import follow_up, on_enter
from jobtask.domain.rules import EXIT_STATUSES, canonical_digest, decide_exit, job_identity
from jobtask.domain.statuses import JobStatus, TaskStatus

J, T = JobStatus, TaskStatus


@pytest.mark.parametrize(
    ("progress", "success", "failed_count", "status", "temporary"),
    [
        (1.0, True, 0, T.COMPLETED, False),
        (0.5, True, 0, T.FAILED, False),  # success without progress=1.0 is not completion
        (1.0, False, 0, T.FAILED, False),  # success=false is a permanent failure
        (0.3, None, 0, T.SOFT_FAILED, True),  # ended undecided: temporary failure
        (1.0, None, 1, T.SOFT_FAILED, True),
        (0.3, None, 2, T.FAILED, True),  # the third failure reaches the default limit of 3
    ],
)
def test_decide_exit(
    progress: float, success: bool | None, failed_count: int, status: TaskStatus, temporary: bool
) -> None:
    decision = decide_exit(progress, success, failed_count)
    assert (decision.status, decision.temporary_failure) == (status, temporary)


def test_exit_statuses_are_every_status_decide_exit_gives() -> None:
    """EXIT_STATUSES labels the finished-attempts metric: all of these, and no other."""
    given = {
        decide_exit(progress, success, failed_count, job_holding=holding).status
        for progress in (0.0, 0.5, 1.0)
        for success in (None, True, False)
        for failed_count in (0, 5)
        for holding in (False, True)
    }
    assert given == set(EXIT_STATUSES)


def test_retry_limit_is_configurable() -> None:
    assert decide_exit(0, None, 0, retry_limit=1).status is T.FAILED
    assert decide_exit(0, None, 3, retry_limit=5).status is T.SOFT_FAILED


def test_identity_ignores_unset_constraints_and_key_order() -> None:
    a = job_identity("s", "v", {"a": 1, "b": 2}, {"min_nodes": None, "max_nodes": 2})
    b = job_identity("s", "v", {"b": 2, "a": 1}, {"max_nodes": 2})
    assert a == b
    assert a != job_identity("s", "v", {"a": 1}, {"max_nodes": 2})


def _json_digest(value: Any) -> str:
    # What identities and submission digests were (stored: must never change).
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class _Color(enum.IntEnum):
    RED = 1


# Values canonical_digest hands orjson, and values it must leave to json: floats (orjson
# writes 1e-05 as 0.00001), ints beyond 64 bits, non-str keys, tuples, enums, subclasses.
_DOCUMENTS: list[Any] = [
    {},
    {"script": "noop", "script_version": "", "script_parameters": {}, "priority": 0},
    {"b": 1, "a": {"d": [1, "x", None, True, False], "c": [], "": {}}},
    {"é": 1, "z": 2, "Z": 3, "\U0001f600": 4, "\uffff": 5, "a\u0000": 6, "\u007f": 7},
    {"n": 2**63 - 1, "m": -(2**63), "u": 2**64 - 1},
    {"big": 2**64, "neg": -(2**63) - 1, "huge": 10**40},
    {"f": 1e-05, "g": 1e16, "h": 0.1, "i": -0.0, "j": 100.0, "k": 1e300},
    {"nested": [[{"x": 1.5}]]},
    {1: "int key", 2: "a"},
    {1: "int key", "a": 1},  # json refuses to sort these keys: so must the digest
    {"t": (1, 2)},
    {"e": _Color.RED},
    [_Color.RED, True, 1, "1"],
    {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
    "x",
    None,
]


@pytest.mark.parametrize("value", _DOCUMENTS)
def test_canonical_digest_is_the_digest_of_json_text(value: Any) -> None:
    try:
        want: Any = _json_digest(value)
    except TypeError as exc:
        want = type(exc)
    try:
        got: Any = canonical_digest(value)
    except TypeError as exc:
        got = type(exc)
    assert got == want


def test_canonical_digest_writes_every_code_point_as_json_does() -> None:
    # Each key and value one run of code points (surrogates apart: orjson refuses a lone
    # one, and json decides it, as below).
    chunk = 2048
    for start in range(0, 0x110000, chunk):
        text = "".join(chr(c) for c in range(start, start + chunk) if not 0xD800 <= c < 0xE000)
        value = {text: [text, '"\\' + text]}
        assert canonical_digest(value) == _json_digest(value), hex(start)


def test_canonical_digest_writes_floats_as_json_does() -> None:
    # Doubles drawn by their bits (every exponent), decimal-looking values and integers as
    # floats, each side of the range orjson is trusted with (1e-4 to 1e16) and its ends.
    rnd = random.Random(16)
    values: list[float] = [0.0, -0.0, 1e-4, -1e-4, 9.9999e-05, 1e16, -1e16, 1e16 - 2, 1e15]
    values += [5e-324, 1.7976931348623157e308, 0.1 + 0.2, 2.0**53, 2.0**63, 123.456]
    values += [math.nan, math.inf, -math.inf]
    while len(values) < 60_000:
        bits = struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0]
        values.append(bits)
        exponent = rnd.randint(-8, 20)
        values.append(round(rnd.uniform(1, 10), rnd.randint(0, 8)) * 10.0**exponent)
        values.append(float(rnd.randint(-(10**17), 10**17)))
    in_range = 0
    for value in values:
        in_range += value == 0.0 or 1e-4 <= abs(value) < 1e16
        assert canonical_digest({"p": value}) == _json_digest({"p": value}), value
    assert in_range > 15_000  # a quarter take orjson's way


def test_a_lone_surrogate_fails_as_with_json_alone() -> None:
    with pytest.raises(UnicodeEncodeError):
        _json_digest({"s": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        canonical_digest({"s": "\ud800"})


def test_nesting_deeper_than_orjson_takes_is_json_s() -> None:
    value: list[Any] = []
    for _ in range(300):
        value = [value]
    assert canonical_digest(value) == _json_digest(value)


def counts(**kw: int) -> dict[TaskStatus, int]:
    return {T(k.replace("_", "-")): v for k, v in kw.items()}


@pytest.mark.parametrize(
    ("job", "task_counts", "expected"),
    [
        (J.QUEUED, counts(active=1, queued=1), J.ACTIVE),
        (J.ACTIVE, counts(completed=3), J.COMPLETED),
        (J.ACTIVE, counts(completed=1, failed=1), J.FAILED),
        (J.ACTIVE, counts(completed=1, queued=1), None),
        (J.CANCEL_REQUESTED, counts(canceled=2, completed=1), J.CANCELED),
        (J.PAUSE_REQUESTED, counts(active=1, paused=2), None),
        (J.PAUSE_REQUESTED, counts(paused=2, completed=1), J.PAUSED),
        (J.PAUSE_REQUESTED, counts(completed=2), J.COMPLETED),
        (J.REQUEUEING, counts(queued=2), J.QUEUED),
        (J.COMPLETED, counts(completed=1, queued=1), J.QUEUED),
        (J.ACTIVE, counts(canceled=1, completed=1), J.CANCELED),
    ],
)
def test_follow_up(job: JobStatus, task_counts: dict[TaskStatus, int], expected: JobStatus) -> None:
    assert follow_up(job, task_counts) == expected


def test_on_enter() -> None:
    (cancel,) = on_enter(J.CANCEL_REQUESTED, J.ACTIVE)
    assert (
        cancel.target is T.CANCELED
        and T.ACTIVE in cancel.sources
        and T.COMPLETED not in cancel.sources
    )
    (requeue_all,) = on_enter(J.REQUEUEING, J.COMPLETED)
    assert T.COMPLETED in requeue_all.sources and requeue_all.reset_attempts
    (requeue_some,) = on_enter(J.REQUEUEING, J.FAILED)
    assert T.COMPLETED not in requeue_some.sources and T.FAILED in requeue_some.sources
    (pause,) = on_enter(J.PAUSE_REQUESTED, J.ACTIVE)
    assert pause.sources == {T.QUEUED, T.SOFT_FAILED} and pause.target is T.PAUSED
    (resume,) = on_enter(J.QUEUED, J.PAUSED)
    assert resume.sources == {T.PAUSED} and resume.target is T.QUEUED
    assert on_enter(J.COMPLETED, J.ACTIVE) == []
