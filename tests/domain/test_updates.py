"""check_value's hashes (jobtask.domain.updates): an empty one is taken as it is, without
being measured; any other is measured and its numbers checked."""

from __future__ import annotations

import pytest
from jobtask.domain.errors import InvalidArgument
from jobtask.domain.resources import MAX_HASH_BYTES, TASK_ATTRS
from jobtask.domain.updates import check_value


def test_an_empty_or_missing_hash_is_an_empty_hash() -> None:
    attr = TASK_ATTRS["parameters"]
    assert check_value("parameters", attr, None) == {}
    empty: dict[str, object] = {}
    assert check_value("parameters", attr, empty) is empty


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a hash"),
        ("{}", "must be a hash"),
        ({"x": "y" * MAX_HASH_BYTES}, "larger than"),
        ({"a": {"b": [1, 2**53]}}, "parameters.a.b\\[1\\]"),
    ],
)
def test_other_hashes_are_checked(value: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check_value("parameters", TASK_ATTRS["parameters"], value)


def test_a_hash_within_bounds_is_kept() -> None:
    value = {"a": [1, 2.5, None, {"b": "c"}], "n": 2**53 - 1}
    assert check_value("parameters", TASK_ATTRS["parameters"], value) is value
